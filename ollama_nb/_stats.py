"""`%ollama stats`: this session's requests, by outcome and by latency. Pure."""

from __future__ import annotations

import math
import statistics
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ._tables import Table

OUTCOMES = ("done", "stopped", "interrupted", "timeout (connect)", "timeout (read)",
            "timeout (total)", "error")  # fmt: skip

# A tail percentile from a handful of samples is only the largest sample under another name:
# show it once there are enough samples for it to mean something.
MIN_SAMPLES = {50: 1, 95: 20, 99: 100}
NOTE = "p95 is shown from 20 samples on, p99 from 100."


class Counted(Protocol):
    """What stats read of a request: an `OllamaResult`, or a batch element's figures."""

    @property
    def done_reason(self) -> str | None: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def timeout_kind(self) -> str | None: ...

    @property
    def elapsed(self) -> float: ...

    @property
    def ttft(self) -> float | None: ...

    @property
    def tokens_per_second(self) -> float | None: ...


class SessionRequests:
    """This session's requests as `%ollama stats` counts them: outcome, latency, time to
    first token and tokens/s, ~20 bytes each (single precision: 7 digits, more than the
    table shows). Not the results themselves: each holds its answer, so every answer of
    the session would stay in memory for good."""

    def __init__(self, results: Iterable[Counted] = ()) -> None:
        self.outcomes: list[str] = []  # interned: one pointer each
        self.elapsed = array("f")
        self.ttft = array("f")  # NaN: none
        self.rates = array("f")  # tokens/s; NaN: none
        self.replayed = 0  # answers replayed from the cache file: not requests
        self.extend(results)

    def append(self, result: Counted) -> None:
        if getattr(result, "cached", False):
            self.replayed += 1
            return
        self.outcomes.append(sys.intern(outcome(result)))
        self.elapsed.append(result.elapsed)
        self.ttft.append(math.nan if result.ttft is None else result.ttft)
        rate = result.tokens_per_second
        self.rates.append(math.nan if rate is None else rate)

    def extend(self, results: Iterable[Counted]) -> None:
        """Results, or a batch's `request_figures()`."""
        for result in results:
            self.append(result)

    def clear(self) -> None:
        self.outcomes.clear()
        for column in (self.elapsed, self.ttft, self.rates):
            del column[:]
        self.replayed = 0

    def __len__(self) -> int:
        return len(self.outcomes)


def outcome(result: Counted) -> str:
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


def stats_table(requests: SessionRequests | Iterable[Counted]) -> Table:
    if not isinstance(requests, SessionRequests):
        requests = SessionRequests(requests)
    if not requests and not requests.replayed:
        return Table([], [], empty="no requests yet in this session")
    counts = Counter(requests.outcomes)
    rows = [["requests", str(len(requests)), ""]]
    if requests.replayed:  # from the cache file: no latency, nothing asked of a server
        rows.append(["replayed (not sent)", str(requests.replayed), ""])
    rows += [[name, str(counts[name]), ""] for name in OUTCOMES if counts[name]]
    rows += spread("latency", list(requests.elapsed), seconds)
    ttft = [t for t in requests.ttft if not math.isnan(t)]
    if ttft:
        rows += spread("time to first token", ttft, seconds)
    rates = [r for r in requests.rates if not math.isnan(r)]
    if rates:
        rows.append(["speed (median)", f"{statistics.median(rates):.1f} tokens/s", str(len(rates))])
    few = len(requests) < max(MIN_SAMPLES.values())
    # the value column's title is wider than its values: run-to-run figures (tokens/s up to
    # 9999.9) never change the text form's layout, which nbval compares
    return Table(["", "in this session", "samples"], rows, empty="", right=("samples",),
                 note=NOTE if few else "")  # fmt: skip
