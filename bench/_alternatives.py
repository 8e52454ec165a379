"""What users feel, beside what they would otherwise write, all in the same kernel:

- `alternatives`: (a) the official client in a sync cell printing each chunk, (b)
  `ollama.AsyncClient` in an async cell printing likewise, (c) a `%%ollama` cell, for 2k-
  and 20k-token answers from the in-process stand-in at full speed: cell wall time
  (execute_request -> execute_reply), first visible text (the stand-in's first byte ->
  the first IOPub message carrying answer text; both `time.monotonic()` of this process),
  IOPub bytes and kernel CPU seconds.
- `responsiveness`: round trip of a `1+1` cell on an idle kernel, and while a
  `%%ollama --background` answer streams at 200 tokens/s into a drawn view.
- `saved_notebook`: the bytes one finished cell adds to the .ipynb, built from the IOPub
  messages as a front end applies them, against jupyter-ai's text/markdown output.
"""

from __future__ import annotations

import statistics
from typing import Any

from _frontend import cell_outputs, jupyter_ai_outputs, saved_bytes
from _kernel import OPEN_BLOCK, ROOT_VIEW, BenchKernel, CellRun
from _stats import ms, summary
from kernel_driver import Cell, Msg

from ollama_nb.testing import StandInServer

ALT_TOKENS = (2_000, 20_000)
FIRST_TEXT_GOAL_MS = 30.0
IDLE_EXTRA_GOAL_MS = 20.0
NOTEBOOK_TOKENS = (1_000, 100_000)
NOTEBOOK_SLACK = 2048  # goal: saved bytes <= 2.3 x answer + 2 KB

_OPTS = "{{'standin_token_interval': 0, 'standin_tokens': {tokens}}}"
ALT_CELLS = {
    "official_sync": (
        "for chunk in ollama.generate(model='stand-in', prompt='Go.', stream=True,"
        f" options={_OPTS}):\n"
        "    print(chunk.response, end='')"
    ),
    "official_async": (
        "async for chunk in await ollama.AsyncClient().generate(model='stand-in',"
        f" prompt='Go.', stream=True, options={_OPTS}):\n"
        "    print(chunk.response, end='')"
    ),
    "ollama_nb": "%%ollama stand-in -o standin_token_interval=0 -o standin_tokens={tokens}\nGo.",
}
ALT_NAMES = tuple(ALT_CELLS)


def _first_text_at(cell: Cell, messages: list[Msg]) -> float | None:
    """When the first message that carries answer text to the front end arrived: the
    cell's own, or a widget update (a front end applies those whatever their parent; one
    sent while the kernel handles the front end's "view drawn" report has that report as
    its parent, not the cell)."""
    for msg in messages:
        if msg.at < cell.sent_at:
            continue
        if msg.type == "comm_msg" and OPEN_BLOCK in str(
            msg.content.get("data", {}).get("state", {}).get("value", "")
        ):
            return msg.at  # the live view's open block (its HTML widget) with text
        if msg.parent_id != cell.msg_id:
            continue
        if msg.type == "stream" and msg.content["name"] == "stdout" and msg.content["text"]:
            return msg.at
        if msg.type in ("display_data", "execute_result") and "text/html" in msg.content["data"]:
            return msg.at  # a finished block, or a record without any live text before it
    return None


def _alt_cell(
    kernel: BenchKernel, server: StandInServer, name: str, tokens: int
) -> tuple[CellRun, float, Cell]:
    """One cell of contender `name`; its run, first-visible-text delay (s), and the cell."""
    driver = kernel.driver
    server.reset()
    if name == "ollama_nb":
        driver.value("globals().pop('_ollama', None) is None")
    cpu = kernel.cpu_seconds()
    code = ALT_CELLS[name].format(tokens=tokens)
    # %%ollama: as a front end that draws the view as soon as it arrives
    cell = driver.submit_drawn(code, 10) if name == "ollama_nb" else driver.submit(code)
    run = kernel.complete(cell, cpu, timeout=120)
    record = [r for r in server.requests if r.path == "/api/generate"][-1]
    first = _first_text_at(cell, kernel.last_messages)
    if run.status != "ok" or first is None or record.first_byte_at is None:
        raise RuntimeError(f"{name} ({tokens} tokens) failed: {run.status} {cell.error_text()}")
    if name != "ollama_nb" and run.live_chars < tokens:
        raise RuntimeError(f"{name} printed {run.live_chars} chars for {tokens} tokens")
    return run, first - record.first_byte_at, cell


def alternatives(
    kernel: BenchKernel, server: StandInServer, runs: int, warmup: int = 1
) -> dict[str, Any]:
    """Rounds of (a), (b), (c) per answer size, in a rotated order, after `warmup`
    discarded rounds."""
    kernel.driver.ok("import ollama")
    out: dict[str, Any] = {}
    for tokens in ALT_TOKENS:
        wall: dict[str, list[float]] = {n: [] for n in ALT_NAMES}
        first: dict[str, list[float]] = {n: [] for n in ALT_NAMES}
        iopub: dict[str, list[float]] = {n: [] for n in ALT_NAMES}
        cpu: dict[str, list[float]] = {n: [] for n in ALT_NAMES}
        by_type: dict[str, int] = {}
        for round_ in range(runs + warmup):
            shift = round_ % len(ALT_NAMES)
            for name in ALT_NAMES[shift:] + ALT_NAMES[:shift]:
                run, delay, _cell = _alt_cell(kernel, server, name, tokens)
                if name == "ollama_nb":
                    by_type = run.bytes_by_type
                if round_ >= warmup:
                    wall[name].append(run.wall)
                    first[name].append(delay)
                    iopub[name].append(run.iopub_bytes)
                    cpu[name].append(run.cpu_seconds)
        row: dict[str, Any] = {
            "wall_s": {n: summary(v) for n, v in wall.items()},
            "first_text_ms": {n: summary(ms(v), 1) for n, v in first.items()},
            "iopub_bytes": {n: summary(v, 0) for n, v in iopub.items()},
            "kernel_cpu_s": {n: summary(v, 3) for n, v in cpu.items()},
            "ollama_nb_iopub_bytes_by_type": by_type,
        }
        for other in ("official_sync", "official_async"):
            row[f"wall_ratio_vs_{other}"] = _median_ratio(wall["ollama_nb"], wall[other])
            row[f"iopub_ratio_vs_{other}"] = _median_ratio(iopub["ollama_nb"], iopub[other])
            row[f"cpu_ratio_vs_{other}"] = _median_ratio(cpu["ollama_nb"], cpu[other])
        out[str(tokens)] = row
    first_all = [
        out[str(t)]["first_text_ms"]["ollama_nb"]["p95"] for t in ALT_TOKENS
    ]  # p95 per size; the headline is the worse one
    out["first_text_ms_p95"] = max(first_all)
    return out


def _median_ratio(mine: list[float], theirs: list[float]) -> float:
    """Median of per-round ratios (same round: same drift)."""
    pairs = [a / b for a, b in zip(mine, theirs, strict=True) if b]
    return round(statistics.median(pairs), 3) if pairs else float("nan")


# -- responsiveness --------------------------------------------------------------------


# 200 tokens/s
RESP_LINE = "stand-in --background -o standin_token_interval=0.005 -o standin_tokens={tokens}"


def _round_trips(kernel: BenchKernel, n: int) -> list[float]:
    times = []
    for _ in range(n):
        cell = kernel.driver.run("1+1", timeout=30)
        assert cell.reply is not None and cell.status == "ok"
        times.append(cell.reply.at - cell.sent_at)
    return times


def responsiveness(kernel: BenchKernel, server: StandInServer, cells: int) -> dict[str, Any]:
    """`1+1` round trips, idle and while a background answer streams at 200 tokens/s."""
    driver = kernel.driver
    _round_trips(kernel, 3)  # warm
    idle = _round_trips(kernel, cells)
    server.reset()
    driver.value("globals().pop('_ollama', None) is None")
    tokens = 200 * 60  # a minute at most: Stop ends it once the round trips are done
    stream_cell = driver.submit(f"%%ollama {RESP_LINE.format(tokens=tokens)}\nGo.")

    def root() -> Any:
        driver.collect(stream_cell)
        return stream_cell.widget(**ROOT_VIEW)

    driver.show_view(driver.wait_for(root, 10, "the live view").content["comm_id"])
    record = server.wait_for_request("/api/generate", timeout=10)
    driver.wait_for(lambda: record.chunks_sent >= 20, 10, "the answer to stream")
    busy = _round_trips(kernel, cells)
    streamed = record.chunks_sent
    driver.collect(stream_cell)
    button = stream_cell.widget(description="Stop")
    if button is None or record.completed:
        raise RuntimeError("the background answer was not streaming during the round trips")
    driver.click(button.content["comm_id"])
    driver.wait_for(
        lambda: driver.value("getattr(globals().get('_ollama'), 'done_reason', None)"),
        30,
        "the background answer to stop",
    )
    driver.settle()
    idle_p95, busy_p95 = _p95_ms(idle), _p95_ms(busy)
    return {
        "cells": cells,
        "tokens_streamed_meanwhile": streamed,
        "idle_ms": summary(ms(idle), 2),
        "streaming_ms": summary(ms(busy), 2),
        "p95_extra_ms": round(busy_p95 - idle_p95, 2),
    }


def _p95_ms(values: list[float]) -> float:
    return float(summary(ms(values), 4)["p95"])


# -- saved notebook --------------------------------------------------------------------


def saved_notebook(
    kernel: BenchKernel, url: str, sizes: tuple[int, ...] = NOTEBOOK_TOKENS
) -> dict[str, Any]:
    """Bytes one finished `%%ollama` cell adds to the .ipynb, per byte of answer (the
    sizes are deterministic but for the status line's figures: one run per size)."""
    out: dict[str, Any] = {}
    for tokens in sizes:
        line = f"stand-in --host {url} -o standin_tokens={tokens}"
        cell = kernel.submit(line, show=True)
        run = kernel.complete(cell, kernel.cpu_seconds(), timeout=120)
        if run.status != "ok":
            raise RuntimeError(f"saved-notebook run failed: {run.status} {run.result}")
        outputs = cell_outputs(kernel.last_messages, cell.msg_id)
        answer = str(kernel.driver.value("_ollama.text"))
        size = saved_bytes(f"%%ollama {line}\nGo.", outputs)
        answer_bytes = len(answer.encode())
        ai = saved_bytes("%%ai ollama:stand-in\nGo.", jupyter_ai_outputs(answer, "stand-in"))
        limit = 2.3 * answer_bytes + NOTEBOOK_SLACK
        out[str(tokens)] = {
            "answer_bytes": answer_bytes,
            "ollama_nb_bytes": size,
            "ollama_nb_ratio": round(size / answer_bytes, 3),
            "output_kinds": [o["output_type"] for o in outputs],
            "output_mimes": [sorted(o.get("data", {})) for o in outputs],
            "limit_bytes": round(limit),
            "within_limit": size <= limit,
            "jupyter_ai_markdown_bytes": ai,
            "jupyter_ai_ratio": round(ai / answer_bytes, 3),
        }
    return out
