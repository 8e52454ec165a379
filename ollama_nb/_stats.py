"""`%ollama stats`: this session's requests, by outcome and by latency. Pure."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from ._result import OllamaResult
from ._tables import Table

OUTCOMES = ("done", "stopped", "interrupted", "timeout (connect)", "timeout (read)",
            "timeout (total)", "error")  # fmt: skip

# A tail percentile from a handful of samples is only the largest sample under another name:
# show it once there are enough samples for it to mean something.
MIN_SAMPLES = {50: 1, 95: 20, 99: 100}
NOTE = "p95 is shown from 20 samples on, p99 from 100."


class SessionRequests(Sequence[OllamaResult]):
    """This session's requests, for `%ollama stats`. A batch is kept as itself (compact)
    and read when the stats are drawn: its results as objects would cost ~1 KB each."""

    def __init__(self) -> None:
        self._parts: list[Sequence[OllamaResult]] = []
        self._count = 0

    def append(self, result: OllamaResult) -> None:
        self._parts.append((result,))
        self._count += 1

    def add_batch(self, requests: Sequence[OllamaResult]) -> None:
        """A batch's requests that started (`OllamaBatch.started()`)."""
        self._parts.append(requests)
        self._count += len(requests)

    def clear(self) -> None:
        self._parts.clear()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[OllamaResult]:
        for part in self._parts:
            yield from part

    @overload
    def __getitem__(self, position: int) -> OllamaResult: ...

    @overload
    def __getitem__(self, position: slice) -> list[OllamaResult]: ...

    def __getitem__(self, position: Any) -> Any:
        return list(self)[position]


def outcome(result: OllamaResult) -> str:
    reason = result.done_reason or ("error" if result.error is not None else "done")
    if reason == "timeout":
        return f"timeout ({result.timeout_kind})"
    return reason if reason in OUTCOMES else "done"


def percentile(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def spread(name: str, values: Sequence[float], show: Callable[[float], str]) -> list[list[str]]:
    """Rows ``[name min|pN|max, value, sample count]`` for the percentiles ``values`` can back."""
    n = str(len(values))
    rows = [[f"{name} p{q}", show(percentile(values, q)), n]
            for q, least in MIN_SAMPLES.items() if len(values) >= least]  # fmt: skip
    if len(values) > 1:  # one sample is its own min, median and max
        rows.insert(0, [f"{name} min", show(min(values)), n])
        rows.append([f"{name} max", show(max(values)), n])
    return rows


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def stats_table(results: Sequence[OllamaResult]) -> Table:
    if not results:
        return Table([], [], empty="no requests yet in this session")
    counts = Counter(outcome(r) for r in results)
    rows = [["requests", str(len(results)), ""]]
    rows += [[name, str(counts[name]), ""] for name in OUTCOMES if counts[name]]
    rows += spread("latency", [r.elapsed for r in results], seconds)
    ttft = [r.ttft for r in results if r.ttft is not None]
    if ttft:
        rows += spread("time to first token", ttft, seconds)
    rates = [r.tokens_per_second for r in results if r.tokens_per_second is not None]
    if rates:
        rows.append(["speed (median)", f"{statistics.median(rates):.1f} tokens/s", str(len(rates))])
    few = len(results) < max(MIN_SAMPLES.values())
    # the value column's title is wider than its values: run-to-run figures (tokens/s up to
    # 9999.9) never change the text form's layout, which nbval compares
    return Table(["", "in this session", "samples"], rows, empty="", right=("samples",),
                 note=NOTE if few else "")  # fmt: skip
