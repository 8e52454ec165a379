"""One function per figure. Each returns plain data (JSON-ready) for results.json."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _clients import run_client
from _kernel import OPEN_BLOCK, BenchKernel, CellRun
from _servers import drain_seconds
from _stats import ms, summary

from ollama_nb.testing import StandInServer, unresponsive_listener

THROUGHPUT_TOKENS = 20_000
IOPUB_TOKENS = (1_000, 10_000, 100_000)
IOPUB_SLACK = 64 * 1024  # goal: bytes <= 3 x answer + 64 KB
MEMORY_TOKENS = 295_000  # ~7.1 bytes a token: a ~2.1 MB answer
MEMORY_IDLE_S = 1.0  # RSS is read once the kernel has been idle this long
TIMEOUT_T = 0.5  # seconds, for each kind of timeout
SLOW = "-o standin_token_interval=0.01 -o standin_tokens=5000"  # ~100 tokens/s, for Stop


@dataclass
class Plan:
    """How many repetitions of each figure (run.py scales them with --quick)."""

    # Rounds of the throughput and alternatives figures: on this shared 2-core VM a
    # contender's time varies up to 1.9x within one run, and the median of 7 per-round
    # ratios moved by +-0.08 from run to run.
    throughput_runs: int = 15
    iopub_runs: int = 3
    stop_clicks: int = 20
    timeout_runs: int = 5
    memory_runs: int = 3
    alt_runs: int = 9  # rounds of the user's alternatives, per answer size
    warmup: int = 1  # discarded rounds before the throughput and alternatives rounds
    memory_tokens: int = MEMORY_TOKENS
    notebook_tokens: tuple[int, ...] = (1_000, 100_000)
    resp_cells: int = 40  # `1+1` round trips, idle and while streaming
    # Rounds of the real-engine row: its 256-token cells take ~0.2 s each, and its
    # per-round ratios spread 0.8x-1.4x on this shared machine.
    engine_runs: int = 25


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


# -- throughput, UI updates, CPU -------------------------------------------------------


def _kernel_sample(kernel: BenchKernel, url: str) -> CellRun:
    run = kernel.run(f"stand-in --host {url}", show=True)
    if run.status != "ok" or run.result.get("chunks") != THROUGHPUT_TOKENS:
        raise RuntimeError(f"%%ollama throughput run failed: {run.status} {run.result}")
    return run


CONTENDERS = ("httpx", "ollama", "ollama_nb")


@dataclass
class Rounds:
    """Wall seconds per contender, one entry per round, and the kernel's runs."""

    seconds: dict[str, list[float]]
    client_cpu: dict[str, list[float]]
    cells: list[CellRun]


def _rounds(kernel: BenchKernel, url: str, runs: int, warmup: int) -> Rounds:
    """`runs` rounds of one answer per contender, after `warmup` discarded rounds.

    Each round takes the contenders in a rotated order, so drift and the after-effects of
    the previous run (another process's CPU, the cache) hit all of them alike.
    """
    rounds = Rounds({n: [] for n in CONTENDERS}, {"httpx": [], "ollama": []}, [])
    for round_ in range(runs + warmup):
        shift = round_ % len(CONTENDERS)
        for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
            if name == "ollama_nb":
                cell = _kernel_sample(kernel, url)
                if round_ >= warmup:
                    rounds.seconds[name].append(cell.wall)
                    rounds.cells.append(cell)
                continue
            sample = run_client(name, url)
            if rounds.cells and sample.chars != rounds.cells[-1].result["chars"]:
                raise RuntimeError(f"{name} and %%ollama received different answers")
            if round_ >= warmup:
                rounds.seconds[name].append(sample.seconds)
                rounds.client_cpu[name].append(sample.cpu_seconds)
    return rounds


def _per_round_ratio(rounds: Rounds, other: str, *, cpu: bool = False) -> float:
    """Median over rounds of (%%ollama / other): robust to drift between rounds.

    With `cpu`, of CPU seconds (the kernel process, all threads, vs. this process): less
    sensitive than wall time to other work on the machine.
    """
    if cpu:
        mine, theirs = [c.cpu_seconds for c in rounds.cells], rounds.client_cpu[other]
    else:
        mine, theirs = rounds.seconds["ollama_nb"], rounds.seconds[other]
    return round(statistics.median(a / b for a, b in zip(mine, theirs, strict=True)), 3)


def throughput(
    kernel: BenchKernel, url: str, runs: int, warmup: int = 1
) -> tuple[dict[str, Any], list[CellRun]]:
    """20k tokens from `url`: raw httpx, the official client, and a `%%ollama` cell.

    Returns the figure and the kernel runs (they feed the UI and CPU figures).
    """
    rounds = _rounds(kernel, url, runs, warmup)
    cells = rounds.cells
    median = {name: statistics.median(v) for name, v in rounds.seconds.items()}
    floor = [drain_seconds(url, {"model": "stand-in", "prompt": "Go."}) for _ in range(runs)]
    cpu_s = {name: summary(v) for name, v in rounds.client_cpu.items()}
    figure = {
        "tokens": THROUGHPUT_TOKENS,
        "answer_bytes": cells[0].result["bytes"],
        "wall_s": {name: summary(v) for name, v in rounds.seconds.items()},
        "ollama_nb_in_kernel_elapsed_s": summary([c.elapsed for c in cells]),
        "server_floor_s": summary(floor),
        "tokens_per_s_ollama_nb": round(THROUGHPUT_TOKENS / median["ollama_nb"]),
        "ratio_vs_httpx": _per_round_ratio(rounds, "httpx"),
        "ratio_vs_ollama_client": _per_round_ratio(rounds, "ollama"),
        "ratio_of_medians_vs_httpx": _ratio(median["ollama_nb"], median["httpx"]),
        "ratio_of_medians_vs_ollama_client": _ratio(median["ollama_nb"], median["ollama"]),
        "cpu_ratio_vs_httpx": _per_round_ratio(rounds, "httpx", cpu=True),
        "cpu_ratio_vs_ollama_client": _per_round_ratio(rounds, "ollama", cpu=True),
        # CPU of the whole client process (the kernel: all its threads) per answer.
        "client_cpu_s": cpu_s | {"ollama_nb": summary([c.cpu_seconds for c in cells])},
    }
    return figure, cells


def ui_updates(cells: list[CellRun]) -> dict[str, Any]:
    """Elapsed-label updates (one per view refresh) in runs with the view drawn."""
    rates = [c.ui_updates / c.wall for c in cells]
    return {
        "runs": len(cells),
        "updates_total": summary([c.ui_updates for c in cells], 1),
        "updates_per_s": summary(rates, 2),
        "max_in_any_1s_window": max(c.ui_updates_max_1s for c in cells),
        "per_s_max": round(max(rates), 2),
        "tokens_per_s": summary([c.result["chunks"] / c.wall for c in cells], 0),
    }


def cpu(cells: list[CellRun]) -> dict[str, Any]:
    per_1k = [c.cpu_seconds / c.result["chunks"] * 1000 for c in cells]
    return {"kernel_cpu_s_per_1k_tokens": summary(per_1k, 5), "runs": len(cells)}


# -- IOPub traffic -----------------------------------------------------------------------


def iopub(kernel: BenchKernel, url: str, runs: int) -> tuple[dict[str, Any], list[CellRun]]:
    """Bytes and messages on IOPub per answer, with the view drawn (the text streams live)."""
    out: dict[str, Any] = {}
    every: list[CellRun] = []
    for tokens in IOPUB_TOKENS:
        cells = [
            kernel.run(f"stand-in --host {url} -o standin_tokens={tokens}", show=True, timeout=120)
            for _ in range(runs)
        ]
        answer = cells[0].result["bytes"]
        worst = max(c.iopub_bytes for c in cells)
        out[str(tokens)] = {
            "answer_bytes": answer,
            "iopub_bytes": summary([c.iopub_bytes for c in cells], 0),
            "iopub_messages": summary([c.iopub_messages for c in cells], 0),
            "ratio": _ratio(statistics.median(c.iopub_bytes for c in cells), answer),
            "limit_bytes": 3 * answer + IOPUB_SLACK,
            "within_limit": worst <= 3 * answer + IOPUB_SLACK,
            "bytes_by_type": cells[-1].bytes_by_type,
            # Text that streamed live before the static record replaced the view.
            "live_text_fraction": round(min(c.live_chars / c.result["chars"] for c in cells), 3),
        }
        every += cells
    return out, every


# -- Stop --------------------------------------------------------------------------------


def stop_latency(kernel: BenchKernel, server: StandInServer, clicks: int) -> dict[str, Any]:
    """Click Stop during a ~100 tokens/s stream; time the reply and the server's close."""
    to_reply: list[float] = []
    to_close: list[float] = []
    for i in range(clicks):
        server.reset()
        reply, close = _one_stop(kernel, server, min_chunks=5 + i % 7)
        to_reply.append(reply)
        to_close.append(close)
    return {
        "clicks": clicks,
        "click_to_execute_reply_ms": summary(ms(to_reply), 1),
        "click_to_server_close_ms": summary(ms(to_close), 1),
    }


def _one_stop(kernel: BenchKernel, server: StandInServer, min_chunks: int) -> tuple[float, float]:
    driver = kernel.driver
    cpu = kernel.cpu_seconds()
    cell = kernel.submit(f"stand-in --host {server.url} {SLOW}", show=True)
    record = server.wait_for_request("/api/generate", timeout=10)
    button = driver.wait_for(lambda: cell.widget(description="Stop"), 10, "the Stop button")
    driver.wait_for(lambda: record.chunks_sent >= min_chunks, 10, f"{min_chunks} chunks")
    clicked = driver.click(button.content["comm_id"])
    run = kernel.complete(cell, cpu, timeout=10)
    if not record.wait_closed(5) or record.disconnected_at is None:
        raise RuntimeError("the server never saw the connection close after Stop")
    if run.result.get("done_reason") != "stopped":
        raise RuntimeError(f"Stop did not stop the request: {run.status} {run.result}")
    return run.wall - (clicked - cell.sent_at), record.disconnected_at - clicked


# -- first text --------------------------------------------------------------------------

FIRST_TEXT_LINE = (
    "stand-in --host {url} -o standin_first_chunk_delay=0.5 -o standin_token_interval=0.3"
    " -o standin_tokens=4"
)


def _first_open_block(kernel: BenchKernel, since: float) -> Any:
    for m in kernel.driver.messages:
        state = m.content.get("data", {}).get("state", {}) if m.type == "comm_msg" else {}
        if m.at >= since and OPEN_BLOCK in str(state.get("value", "")):
            return m
    return None


def first_text(kernel: BenchKernel, server: StandInServer, runs: int) -> dict[str, Any]:
    """From the server writing the first chunk to the live view's first text on IOPub
    (the view drawn first: the chunk comes 0.5 s after the request)."""
    delays = []
    for _ in range(runs):
        server.reset()
        cpu = kernel.cpu_seconds()
        cell = kernel.submit(FIRST_TEXT_LINE.format(url=server.url), show=True)
        record = server.wait_for_request("/api/generate", timeout=10)
        first = kernel.driver.wait_for(
            functools.partial(_first_open_block, kernel, cell.sent_at), 10, "the first live text"
        )
        kernel.complete(cell, cpu, timeout=10)
        if record.first_byte_at is None:
            raise RuntimeError("the stand-in never answered")
        delays.append(first.at - record.first_byte_at)
    return {"runs": runs, "chunk_to_first_text_ms": summary(ms(delays), 1)}


# -- timeouts ----------------------------------------------------------------------------


TIMEOUT_LINES = {
    "connect": "stand-in --host {url} --connect-timeout {t} --retries 0",
    "read": "stand-in --host {url} --read-timeout {t} -o standin_first_chunk_delay={delay}",
    "total": "stand-in --host {url} --timeout {t} -o standin_token_interval=0.02"
    " -o standin_tokens=5000",
}


def timeouts(kernel: BenchKernel, standin_url: str, runs: int) -> dict[str, Any]:
    """Overshoot past T = 0.5 s: in-kernel (`_ollama.elapsed`) and end-to-end (reply)."""
    out: dict[str, Any] = {"T_s": TIMEOUT_T}
    with unresponsive_listener() as hanging:  # connects to it hang until the client gives up
        for kind, line in TIMEOUT_LINES.items():
            url = hanging if kind == "connect" else standin_url
            cell_line = line.format(url=url, t=TIMEOUT_T, delay=4 * TIMEOUT_T)
            cells = [kernel.run(cell_line, show=True, timeout=30) for _ in range(runs)]
            for c in cells:
                if c.result.get("timeout_kind") != kind:
                    raise RuntimeError(f"{kind} timeout did not happen: {c.status} {c.result}")
            out[kind] = {
                "in_kernel_overshoot_ms": summary(ms([c.elapsed - TIMEOUT_T for c in cells]), 1),
                "end_to_end_overshoot_ms": summary(ms([c.wall - TIMEOUT_T for c in cells]), 1),
            }
    return out


# -- memory ------------------------------------------------------------------------------


def _memory_sample(python: str, url: str, tokens: int) -> tuple[int, int]:
    """(RSS growth, answer bytes) for the first ~2 MB answer of a fresh, warmed-up kernel."""
    with BenchKernel(python, url) as kernel:
        kernel.run(f"stand-in --host {url} -o standin_tokens=1000", show=True)  # imports etc.
        time.sleep(MEMORY_IDLE_S)
        before = kernel.rss_bytes()
        line = f"stand-in --host {url} -o standin_tokens={tokens}"
        run = kernel.run(line, show=True, timeout=120)
        if run.status != "ok":
            raise RuntimeError(f"the 2 MB answer failed: {run.status} {run.result}")
        time.sleep(MEMORY_IDLE_S)  # the kernel trims its heap 0.5 s after a big answer
        return kernel.rss_bytes() - before, int(run.result["bytes"])


def memory(python: str, url: str, runs: int, tokens: int = MEMORY_TOKENS) -> dict[str, Any]:
    """RSS growth per ~2 MB answer (gc.collect() before each reading), one fresh kernel each:
    in a kernel that already held big answers, freed memory is reused and growth reads low."""
    samples = [_memory_sample(python, url, tokens) for _ in range(runs)]
    ratios = [growth / answer for growth, answer in samples]
    return {
        "answer_bytes": samples[0][1],
        "rss_growth_bytes": [growth for growth, _ in samples],
        "ratio": summary(ratios, 2),
    }


def timed(label: str, work: Callable[[], Any]) -> Any:
    """Run one figure, with progress lines around it."""
    print(f"[bench] {label} ...", flush=True)
    started = time.monotonic()
    value = work()
    print(f"[bench] {label}: {time.monotonic() - started:.1f} s", flush=True)
    return value
