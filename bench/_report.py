"""The headline figures, the goals they are held to, and the printed table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    key: str  # headline key in results.json
    figure: str
    goal: str
    met: Callable[[float], bool] | None  # None: reported only
    unit: str = ""


GOALS = (
    Goal("throughput_ratio_vs_httpx", "throughput: %%ollama / raw httpx", "<= 1.15x",
         lambda v: v <= 1.15, "x"),
    Goal("throughput_ratio_vs_ollama_client", "throughput: %%ollama / ollama client",
         "< 1.00x (ahead)", lambda v: v < 1.0, "x"),
    Goal("throughput_client_bound_ratio_vs_httpx",
         "same, client-bound (replay server): / raw httpx", "<= 1.15x", lambda v: v <= 1.15, "x"),
    Goal("throughput_client_bound_ratio_vs_ollama_client",
         "same, client-bound: / ollama client", "< 1.00x (ahead)", lambda v: v < 1.0, "x"),
    Goal("ui_updates_per_s_max", "UI updates per second (max)", "<= 20/s",
         lambda v: v <= 20, "/s"),
    Goal("iopub_bytes_ratio_100k", "IOPub bytes / answer, 100k tokens",
         "<= 3x + 64 KB", None, "x"),
    Goal("first_text_ms_p95", "first chunk -> first live text p95 (IOPub)", "<= 30 ms",
         lambda v: v <= 30, " ms"),
    Goal("stop_click_to_close_ms_p95_k7", "Stop click -> server close p95, ipykernel 7.4",
         "<= 50 ms", lambda v: v <= 50, " ms"),
    Goal("stop_click_to_close_ms_p95_k6", "Stop click -> server close p95, ipykernel 6.29",
         "reported", None, " ms"),
    Goal("timeout_overshoot_ms_p95", "timeout overshoot p95 (worst kind, end to end)",
         "<= 100 ms", lambda v: v <= 100, " ms"),
    Goal("rss_growth_ratio_2mb", "kernel RSS growth / 2 MB answer (median)", "<= 3x",
         lambda v: v <= 3, "x"),
    Goal("cpu_s_per_1k_tokens", "kernel CPU s per 1k tokens (median)", "reported", None, " s"),
)  # fmt: skip


def verdict(goal: Goal, results: dict[str, Any]) -> str:
    value = results.get(goal.key)
    if value is None:
        return "not measured"
    if goal.key == "iopub_bytes_ratio_100k":
        ok = results["iopub"]["100000"]["within_limit"]
        return "met" if ok else "MISSED"
    if goal.met is None:
        return "-"
    return "met" if goal.met(float(value)) else "MISSED"


def table(results: dict[str, Any]) -> str:
    """A Markdown table: figure, measured value, goal, verdict."""
    rows = [("figure", "measured", "goal", "verdict"), ("---", "---:", "---", "---")]
    for goal in GOALS:
        value = results.get(goal.key)
        shown = "-" if value is None else f"{value:g}{goal.unit}"
        rows.append((goal.figure, shown, goal.goal, verdict(goal, results)))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def details(results: dict[str, Any]) -> str:
    """The medians behind the headline figures, in a few readable lines."""
    lines = []
    for label in ("throughput", "throughput_client_bound"):
        t = results.get(label)
        if t:
            wall = t["wall_s"]
            lines.append(
                f"{label}: 20k tokens, median (p95) s: httpx {_mp(wall['httpx'])}, "
                f"ollama {_mp(wall['ollama'])}, %%ollama {_mp(wall['ollama_nb'])} "
                f"(in-kernel {_mp(t['ollama_nb_in_kernel_elapsed_s'])}); "
                f"server floor {_mp(t['server_floor_s'])}; CPU ratio %%ollama/httpx "
                f"{t['cpu_ratio_vs_httpx']}, /ollama {t['cpu_ratio_vs_ollama_client']}"
            )
    for tokens, row in results.get("iopub", {}).items():
        lines.append(
            f"IOPub {int(tokens):,} tokens ({row['answer_bytes']:,} B answer): "
            f"{row['iopub_bytes']['median']:,.0f} B in {row['iopub_messages']['median']:.0f}"
            f" messages ({row['ratio']}x; limit {row['limit_bytes']:,} B)"
        )
    for kernel in ("k7", "k6"):
        s = results.get(f"stop_{kernel}")
        if s:
            lines.append(
                f"Stop ({kernel}, {s['clicks']} clicks) ms median/p95: click->reply "
                f"{_mp(s['click_to_execute_reply_ms'])}, click->server close "
                f"{_mp(s['click_to_server_close_ms'])}"
            )
    t = results.get("timeouts", {})
    for kind in ("connect", "read", "total"):
        if kind in t:
            lines.append(
                f"{kind} timeout T={t['T_s']} s overshoot ms median/p95: in-kernel "
                f"{_mp(t[kind]['in_kernel_overshoot_ms'])}, end-to-end "
                f"{_mp(t[kind]['end_to_end_overshoot_ms'])}"
            )
    u = results.get("ui_updates")
    if u:
        lines.append(
            f"UI: {u['runs']} runs of >= 20k tokens at {_mp(u['tokens_per_s'])} tokens/s: "
            f"{_mp(u['updates_per_s'])} updates/s, at most {u['max_in_any_1s_window']} in any 1 s"
        )
    m = results.get("memory")
    if m:
        ratios = [round(g / m["answer_bytes"], 2) for g in m["rss_growth_bytes"]]
        lines.append(f"memory: {m['answer_bytes']:,} B answer, RSS growth x answer: {ratios}")
    return "\n".join(lines)


def _mp(s: dict[str, float | int]) -> str:
    return f"{s['median']:g} ({s['p95']:g})"
