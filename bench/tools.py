"""Benchmark of the tool loop (`--tools`, `ollama_nb._tool_loop`) against the stand-in.

Run (from the repository root, after `tests/run` made .venv)::

    .venv/bin/python bench/tools.py             # 200 rounds, 30 stops of each kind
    .venv/bin/python bench/tools.py --quick

Figures (printed, and written to bench/tools_results.json)
- the loop's own time per round: the wall time of a run of N rounds (a model that never
  stops calling, `max_steps=N`) minus the time spent streaming each response and running
  each tool — what the loop adds: reading the calls, checking them, building the messages,
  the view's tool list (goal ≤ 5 ms);
- Stop latency, from `StopControl.stop()` to the request's end, while a round streams and
  between rounds (while the next response is awaited) (goal p95 ≤ 50 ms).
The request runs in this process (no kernel), the stand-in in a thread of it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ollama_nb._request import Ask, build  # noqa: E402
from ollama_nb._stream import StopControl, Transcript, drive, stream_response  # noqa: E402
from ollama_nb._tool_loop import converse  # noqa: E402
from ollama_nb.testing import StandInServer  # noqa: E402


class Counting:
    """A view that does what a view does with tool calls (reads them) and nothing else."""

    def start(self, model: str) -> None:
        pass

    def update(self, transcript: Transcript) -> None:
        for call in transcript.calls:
            call.shown(), call.outcome()

    def finish(self, result: Any) -> None:
        pass


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


async def _request(url: str, prompt: str, max_steps: int) -> Any:
    ask = Ask(prompt=prompt, model="stand-in-tools", host=url, tools=[add], max_steps=max_steps)
    return (await build(ask, configured={})).request


async def loop_overhead(url: str, rounds: int) -> dict[str, float]:
    request = await _request(url, "call forever: add(a=1, b=2); add(a=3, b=4)", rounds)
    spent = {"stream": 0.0}

    async def timed(*args: Any) -> None:
        started = time.perf_counter()
        try:
            await stream_response(*args)
        finally:
            spent["stream"] += time.perf_counter() - started

    loop = functools.partial(converse, stream_one=timed)
    started = time.perf_counter()
    result = await drive(request, Counting(), StopControl(), lambda r: None, loop)
    wall = time.perf_counter() - started
    tools = sum(call.elapsed for call in result.tool_calls)
    assert result.done_reason == "max_steps", result.status
    per_round = (wall - spent["stream"] - tools) / rounds
    return {"rounds": rounds, "wall_s": wall, "loop_ms_per_round": per_round * 1000}


async def stop_latency(server: StandInServer, where: str) -> float:
    """While streaming: a round whose long thinking streams before its calls. Between
    rounds: the wait for the next response (0.3 s of model load each)."""
    server.reset()
    if where == "streaming":
        server.configure(token_interval=0.01)
        prompt = "think: " + "word " * 400 + "\ncall: add(a=1, b=2)"
        requests_before_stop = 1
    else:
        server.configure(first_chunk_delay=0.3)
        prompt = "call forever: add(a=1, b=2)"
        requests_before_stop = 2
    request = await _request(server.url, prompt, 50)
    control = StopControl()
    stopped: dict[str, float] = {}

    async def stop_later() -> None:
        while len(server.requests) < requests_before_stop:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        stopped["at"] = time.perf_counter()
        control.stop()

    stopper = asyncio.ensure_future(stop_later())
    result = await drive(request, Counting(), control, lambda r: None)
    ended = time.perf_counter()
    stopper.cancel()
    assert result.done_reason == "stopped", result.status
    return (ended - stopped["at"]) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(rounds: int, stops: int) -> dict[str, Any]:
    with StandInServer() as server:
        overhead = await loop_overhead(server.url, rounds)
        figures: dict[str, Any] = {"overhead": overhead}
        for where in ("streaming", "between rounds"):
            latencies = [await stop_latency(server, where) for _ in range(stops)]
            figures[f"stop {where}"] = {
                "n": stops,
                "p50_ms": statistics.median(latencies),
                "p95_ms": percentile(latencies, 95),
                "max_ms": max(latencies),
            }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "tools_results.json"))
    args = parser.parse_args()
    rounds, stops = (20, 5) if args.quick else (200, 30)
    figures = asyncio.run(main(rounds, stops))
    print(json.dumps(figures, indent=2))
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
