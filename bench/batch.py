"""Benchmark of batches (`%%ollama --each`), in real kernels against the stand-in.

Run (from the repository root, after `tests/run` made .venv)::

    .venv/bin/python bench/batch.py            # ~3-5 minutes on 2 busy cores
    .venv/bin/python bench/batch.py --quick    # 1 round, no 10,000 run

Figures (printed, and written to bench/batch_results.json)
- wall time of 1,000 short prompts at --parallel 4 against a stand-in serving 4 at once
  (its own process, no token delay): a `%%ollama --each` cell in an ipykernel 7.4 kernel
  with the view drawn (execute_request sent -> execute_reply) vs a bare asyncio + httpx
  loop with a semaphore of 4 and one shared AsyncClient, doing the same requests (goal
  <= 1.10x). Rounds alternate the two; the ratio is the median of per-round ratios.
  Each answer is `--tokens` tokens (default 40, ~300 bytes).
- progress view updates: state updates of the view's one HTML widget, total and the most
  within any one second (goal <= 10/s).
- IOPub bytes of the whole batch cell (its own messages and every comm message while it
  ran) vs the goal 64 KB + 1 KB per 100 elements.
- kernel RSS growth (VmRSS after gc, before and after the batch, read before anything
  reads the results; `_ollama` holds them all) vs the total answer bytes (goal <= 2x);
  kernel CPU per request. Each kernel first runs a 50-element warm-up batch, not
  measured: the first batch imports the batch modules and opens the first connections, a
  one-time cost that is not per element. Earlier batches are kept alive, so that a round
  does not reuse a freed batch's memory.
- the same for 10,000 prompts (one run).
- Stop: click (the shell comm_msg a browser sends) -> every response in flight closed at
  the server, over `--clicks` batches at --parallel 4 (goal p95 <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _kernel import ROOT, BenchKernel
from _servers import _process
from _stats import summary

from ollama_nb.testing import StandInServer

SERVER = (
    "import sys, time; from ollama_nb.testing import StandInServer;"
    " s = StandInServer(num_parallel=4, token_interval=0, tokens=int(sys.argv[1])).start();"
    " print(s.url, flush=True); time.sleep(1e7)"
)
PROMPT = "Summarise ticket {item} in one line."
VIEW_MIME = "application/vnd.jupyter.widget-view+json"


async def _bare(url: str, n: int, parallel: int) -> tuple[float, float, int]:
    """The loop anyone would write: a semaphore and one shared AsyncClient."""
    semaphore = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(i: int) -> str:
            async with semaphore:
                payload = {"model": "stand-in", "prompt": PROMPT.format(item=i), "stream": True}
                parts: list[str] = []
                async with client.stream("POST", "/api/generate", json=payload) as response:
                    async for line in response.aiter_lines():
                        if line:
                            parts.append(json.loads(line).get("response", ""))
                return "".join(parts)

        started, cpu = time.perf_counter(), time.process_time()
        texts = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started, time.process_time() - cpu, sum(map(len, texts))


def _batch_cell(kernel: BenchKernel, n: int, parallel: int) -> dict[str, Any]:
    driver = kernel.driver
    # Earlier batches stay alive (as in a session that keeps its results), so each batch's
    # growth is its own, not memory a freed batch left for it to reuse.
    driver.ok("_kept = globals().get('_kept', []); _kept.append(globals().get('_ollama'))")
    driver.ok(f"items = list(range({n})); _ollama = None")
    driver.value("__import__('gc').collect()")
    rss_before = kernel.rss_bytes()
    cpu_before = kernel.cpu_seconds()
    cell = driver.submit(f"%%ollama stand-in --each items --parallel {parallel}\n{PROMPT}")

    def view() -> Any:
        driver.collect(cell)
        return next((m for m in cell.comm_opens() if "HBox" in str(m.content)), None) or cell.reply

    seen = driver.wait_for(view, 30, "the progress view")
    if seen.type == "comm_open":
        driver.show_view(seen.content["comm_id"])
    driver.finish(cell, timeout=1800)
    cpu = kernel.cpu_seconds() - cpu_before
    assert cell.status == "ok", cell.error_text()
    own = [m for m in driver.messages if m.channel == "iopub" and m.at >= cell.sent_at
           and (m.parent_id == cell.msg_id or m.type.startswith("comm"))]  # fmt: skip
    html = [m for m in cell.comm_opens() if m.content["data"]["state"].get("_model_name")
            == "HTMLModel"]  # fmt: skip
    times = sorted(m.at for m in cell.updates_of(html[0].content["comm_id"])) if html else []
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    # Before the probe below: its list of every answer is this benchmark's, not the batch's.
    rss_after = kernel.rss_bytes()
    facts = driver.value(
        "{'counts': _ollama.counts(), 'answer_bytes': sum(len(t.encode()) for t in _ollama.texts)}"
    )
    driver.settle()
    wall = cell.reply.at - cell.sent_at
    return {
        "n": n,
        "wall_s": round(wall, 3),
        "kernel_cpu_s": round(cpu, 3),
        "kernel_cpu_ms_per_request": round(1000 * cpu / n, 3),
        "iopub_bytes": sum(m.size() for m in own),
        "iopub_goal_bytes": 64_000 + 1_000 * n // 100,
        "iopub_messages": len(own),
        "view_updates": len(times),
        "view_updates_max_1s": most,
        "answer_bytes": facts["answer_bytes"],
        "rss_growth_bytes": rss_after - rss_before,
        "rss_growth_ratio": round((rss_after - rss_before) / max(1, facts["answer_bytes"]), 2),
        "counts": facts["counts"],
    }


def _stop_latency(python: str, clicks: int) -> dict[str, Any]:
    closes: list[float] = []
    with StandInServer(num_parallel=4, token_interval=0.02, tokens=5000) as server:
        kernel = BenchKernel(python, server.url)
        try:
            driver = kernel.driver
            driver.ok("items = list(range(40))")
            for _ in range(clicks):
                server.reset()
                server.configure(num_parallel=4, token_interval=0.02, tokens=5000)
                cell = driver.submit(f"%%ollama stand-in --each items --parallel 4\n{PROMPT}")
                driver.wait_for(
                    lambda: sum(r.chunks_sent >= 3 for r in server.requests) >= 4, 20, "4 streams"
                )
                button = driver.wait_for(lambda c=cell: c.widget(description="Stop"), 10, "Stop")
                clicked = driver.click(button.content["comm_id"])
                driver.finish(cell, 20)
                records = server.requests
                for record in records:
                    record.wait_closed(5)
                closes.append(max(r.disconnected_at - clicked for r in records) * 1000)
                driver.settle()
        finally:
            kernel.close()
    return {"click_to_all_closed_ms": summary(closes), "runs": len(closes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="python of the kernels")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "batch_results.json"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.big, args.clicks = 1, 0, 5
    started = time.monotonic()
    report: dict[str, Any] = {"loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    with _process([sys.executable, "-c", SERVER, str(args.tokens)]) as url:
        bare: list[dict[str, Any]] = []
        cells: list[dict[str, Any]] = []
        with BenchKernel(args.python, url) as kernel:
            warm = _batch_cell(kernel, 50, 4)  # warm-up: imports, first connections
            print(f"warm-up batch of 50 (not counted): RSS +{warm['rss_growth_bytes']} B",
                  flush=True)  # fmt: skip
            asyncio.run(_bare(url, 50, 4))
            for round_ in range(args.rounds):
                wall, cpu, chars = asyncio.run(_bare(url, args.n, 4))
                bare.append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "chars": chars})
                cells.append(_batch_cell(kernel, args.n, 4))
                ratio = cells[-1]["wall_s"] / bare[-1]["wall_s"]
                print(f"round {round_ + 1}: bare {wall:.2f} s, cell {cells[-1]['wall_s']:.2f} s,"
                      f" ratio {ratio:.3f}, RSS growth {cells[-1]['rss_growth_ratio']}x"
                      " the answers", flush=True)  # fmt: skip
        report["bare"] = bare
        report["cell"] = cells
        ratios = [c["wall_s"] / b["wall_s"] for b, c in zip(bare, cells, strict=True)]
        report["wall_ratio_vs_bare_httpx"] = round(statistics.median(ratios), 3)
        if args.big:
            with BenchKernel(args.python, url) as kernel:
                _batch_cell(kernel, 50, 4)
                report["big"] = _batch_cell(kernel, args.big, 4)
                print(f"{args.big}: {report['big']}", flush=True)
    report["stop"] = _stop_latency(args.python, args.clicks)
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["bench_seconds"] = round(time.monotonic() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
