"""`%ollama stats`: this session's requests, by outcome and by latency. Pure."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from ._result import OllamaResult
from ._tables import Table

OUTCOMES = ("done", "stopped", "interrupted", "timeout (connect)", "timeout (read)",
            "timeout (total)", "error")  # fmt: skip


def outcome(result: OllamaResult) -> str:
    reason = result.done_reason or ("error" if result.error is not None else "done")
    if reason == "timeout":
        return f"timeout ({result.timeout_kind})"
    return reason if reason in OUTCOMES else "done"


def percentile(values: Sequence[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats_table(results: Sequence[OllamaResult]) -> Table:
    if not results:
        return Table([], [], empty="no requests yet in this session")
    counts = Counter(outcome(r) for r in results)
    rows = [["requests", str(len(results))]]
    rows += [[name, str(counts[name])] for name in OUTCOMES if counts[name]]
    elapsed = [r.elapsed for r in results]
    rows += [[f"latency p{q}", f"{percentile(elapsed, q):.2f} s"] for q in (50, 95, 99)]
    ttft = [r.ttft for r in results if r.ttft is not None]
    if ttft:
        rows += [[f"time to first token p{q}", f"{percentile(ttft, q):.2f} s"] for q in (50, 95)]
    rates = [r.tokens_per_second for r in results if r.tokens_per_second is not None]
    if rates:
        rows.append(["speed (median)", f"{statistics.median(rates):.1f} tokens/s"])
    return Table(["", "this session"], rows, empty="")
