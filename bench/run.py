"""Benchmark of ollama_nb: throughput, view updates, IOPub traffic, Stop latency,
timeout accuracy, memory and CPU of `%%ollama` cells in real kernels.

Run (from the repository root; `tests/run --co -q` creates .venv and .venv-k6)::

    .venv/bin/python bench/run.py                      # ~5 minutes on 2 quiet cores
    .venv/bin/python bench/run.py --python-k6 PATH     # another ipykernel 6.29 python
    .venv/bin/python bench/run.py --quick --out /tmp/r.json   # a smoke run
    .venv/bin/python bench/run.py --python-k7 WRAPPER          # kernels of a patched copy
    .venv/bin/python bench/run.py --readme       # docs/performance.md figures, from results.json

(WRAPPER: a script that runs ``.venv/bin/python "$@"`` with PYTHONPATH set to a patched
copy of ollama_nb, to measure a change without touching the checkout.)

It prints a table and writes bench/results.json. Every figure is repeated; medians and
p95 (linear interpolation, so close to the max for few runs) are reported.

Figures
- throughput: wall time for a 20,000-token answer at full speed from the same stand-in
  server process (``python -m ollama_nb.testing --token-interval 0``), for a raw
  ``httpx.AsyncClient`` loop (aiter_lines + json.loads), the official
  ``ollama.AsyncClient`` and a ``%%ollama`` cell in a real ipykernel 7.4 kernel, driven
  with jupyter_client, with the view drawn. The cell's time is what a user waits:
  execute_request sent -> execute_reply received (``_ollama.elapsed``, in the kernel, is
  reported too). The reference clients create their client before the clock starts.
  ``server_floor_s`` is the time a bare socket needs to drain the same answer: when it is
  close to the clients' times the server is the bottleneck, so the same comparison is
  repeated against a replay server (``throughput_client_bound``) that writes a recorded
  answer at once and leaves the client as the only limit.
- UI updates: state updates of the elapsed-time label (one per view refresh) per second
  of the cell, in every full-speed run of >= 20k tokens with the view drawn (the
  throughput runs, at 20k-60k tokens/s, and the 100k-token IOPub runs).
- IOPub traffic: bytes (JSON of header, parent, metadata and content) and messages on
  IOPub for one cell: its own messages plus all comm messages while it ran, for answers
  of 1k, 10k and 100k tokens, with the front end having drawn the view (``_view_count``
  update sent), so that the answer really streams. Goal: bytes <= 3 x answer + 64 KB.
- Stop latency: 20 Stop clicks (the shell ``comm_msg`` a browser sends) during a
  ~100 tokens/s stream: click -> execute_reply, and click -> the stand-in server noticed
  the connection close, on ipykernel 7.4 and 6.29.
- Timeout accuracy: overshoot past T = 0.5 s of connect (a listener whose accept queue is
  full, ``--retries 0``), read (model load longer than T) and total (a slow trickle)
  timeouts: in-kernel (``_ollama.elapsed - T``) and end to end (reply - T).
- Memory: RSS (``/proc/PID/status`` VmRSS after ``gc.collect()``, the kernel idle for
  1 s) before and after a ~2 MB answer (295k tokens), divided by the answer's size;
  each sample is the first big answer of a fresh kernel (after a small warm-up cell),
  since a kernel that already held a big answer reuses the freed memory.
- The user's alternatives (bench/_alternatives.py), in one kernel against the in-process
  stand-in at full speed, 2k and 20k tokens: the official client in a sync cell and
  ``ollama.AsyncClient`` in an async cell, each printing every chunk, beside ``%%ollama``:
  cell wall time, first visible text (stand-in's first byte -> first IOPub message with
  answer text, view drawn), IOPub bytes, kernel CPU.
- Responsiveness: ``1+1`` round trips, idle and while a ``--background`` answer streams
  at 200 tokens/s into a drawn view; the difference of their p95.
- Saved notebook: bytes one finished cell adds to the .ipynb, its outputs rebuilt from
  the IOPub messages as a front end applies them (bench/_frontend.py) and written by
  nbformat, for 1k and 100k tokens, beside jupyter-ai's text/markdown output.
- CPU: kernel process utime + stime (``/proc/PID/stat``) per 1k tokens, from the
  throughput runs against the stand-in.
- A real engine (bench/_engine.py): llama.cpp (llama-cpp-python's server from
  ``.venv-engine``, the tiny model of tests/engine/make_model.py) streaming the same
  256-token chat answer at temperature 0 to the ``openai`` client printing each delta, in
  a sync and an async cell, and to ``%%ollama tiny --host http://127.0.0.1:PORT/v1``, in
  one kernel: cell wall time, first visible text (engine's first response byte -> first
  IOPub text), IOPub bytes. Skipped, with the reason, when ``.venv-engine`` is missing.
  ``--only engine`` measures just this row and merges it into ``--out``'s results.
- Context: time to describe a 5,000,000-row DataFrame and a 200 MB string for
  ``--context`` (bench/_context.py), in this process: the describer is pure.

Reading the numbers: throughput ratios are medians of per-round ratios (the contenders
alternate within a round); ``cpu_ratio_*`` compare CPU seconds instead, which other work
on a shared machine disturbs far less than wall time (``machine.loadavg_*`` tells how
busy it was). ``timeout_overshoot_ms_p95`` is the worst kind's end-to-end p95.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _alternatives import alternatives, responsiveness, saved_notebook
from _clients import PAYLOAD
from _context import context_times
from _engine import engine_row, engine_unavailable
from _figures import (
    THROUGHPUT_TOKENS,
    Plan,
    cpu,
    first_text,
    iopub,
    memory,
    stop_latency,
    throughput,
    timed,
    timeouts,
    ui_updates,
)
from _kernel import ROOT, BenchKernel
from _report import details, readme, table
from _servers import record_response, replay, stand_in

from ollama_nb.testing import StandInServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python-k6",
        default=str(ROOT / ".venv-k6" / "bin" / "python"),
        help="python of an ipykernel 6.29 environment (default %(default)s)",
    )
    parser.add_argument(
        "--python-k7",
        default=sys.executable,
        help="python of the ipykernel 7.4 kernels (default: this one); e.g. a wrapper that"
        " puts a patched copy of ollama_nb first on PYTHONPATH, to compare a change",
    )
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results.json"), help="where to write results"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument(
        "--only",
        choices=("engine",),
        help="measure only this row and merge it into --out's existing results",
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="measure nothing: print docs/performance.md's figures from --out's results",
    )
    return parser


def _machine(k7: str, k6: str | None, load_before: list[float]) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln), "?"
    )
    from importlib.metadata import version

    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "ipykernel": {"k7": k7, "k6": k6},
        "packages": {p: version(p) for p in ("httpx", "ollama", "ipywidgets", "pyzmq")},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # Other work on the machine skews wall times: 1/5/15-minute load, before and after.
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _measure_k7(
    plan: Plan, python: str, standin: str, replay_url: str, inproc: StandInServer
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with BenchKernel(python, standin) as k7:
        results["_k7"] = k7.version("ipykernel")
        results["throughput"], cells = timed(
            "throughput vs stand-in",
            lambda: throughput(k7, standin, plan.throughput_runs, plan.warmup),
        )
        results["throughput_client_bound"], bound = timed(
            "throughput vs replay",
            lambda: throughput(k7, replay_url, plan.throughput_runs, plan.warmup),
        )
        results["iopub"], io_cells = timed(
            "IOPub traffic", lambda: iopub(k7, standin, plan.iopub_runs)
        )
        long_runs = [c for c in cells + bound + io_cells if c.result["chunks"] >= 20_000]
        results["ui_updates"] = ui_updates(long_runs)
        results["cpu"] = cpu(cells)
        results["first_text"] = timed(
            "first text", lambda: first_text(k7, inproc, min(plan.stop_clicks, 10))
        )
        results["stop_k7"] = timed(
            "Stop on 7.4", lambda: stop_latency(k7, inproc, plan.stop_clicks)
        )
        results["timeouts"] = timed("timeouts", lambda: timeouts(k7, standin, plan.timeout_runs))
    return results


def _measure_user(plan: Plan, python: str, standin: str, inproc: StandInServer) -> dict[str, Any]:
    """What users feel: the alternatives they would write, responsiveness, saved size."""
    results: dict[str, Any] = {}
    with BenchKernel(python, inproc.url) as kernel:
        results["alternatives"] = timed(
            "alternatives in one kernel",
            lambda: alternatives(kernel, inproc, plan.alt_runs, plan.warmup),
        )
        results["responsiveness"] = timed(
            "responsiveness while streaming",
            lambda: responsiveness(kernel, inproc, plan.resp_cells),
        )
        results["saved_notebook"] = timed(
            "saved notebook bytes", lambda: saved_notebook(kernel, standin, plan.notebook_tokens)
        )
    return results


def _measure_k6(plan: Plan, python: str, inproc: StandInServer) -> dict[str, Any]:
    if not Path(python).exists():
        print(f"… no ipykernel 6.29 python at {python}: Stop on 6.29 not measured")
        return {}
    with BenchKernel(python, inproc.url) as k6:
        return {
            "_k6": k6.version("ipykernel"),
            "stop_k6": timed("Stop on 6.29", lambda: stop_latency(k6, inproc, plan.stop_clicks)),
        }


def measure(plan: Plan, python_k7: str, python_k6: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with (
        stand_in(THROUGHPUT_TOKENS) as standin,
        StandInServer() as inproc,
        tempfile.TemporaryDirectory(prefix="ollama-nb-bench-") as tmp,
    ):
        recording = Path(tmp) / "answer.http"
        recording.write_bytes(record_response(standin, PAYLOAD))
        with replay(recording) as replay_url:
            results |= _measure_k7(plan, python_k7, standin, replay_url, inproc)
        results |= _measure_user(plan, python_k7, standin, inproc)
        results |= _measure_k6(plan, python_k6, inproc)
        results["memory"] = timed(
            "memory (fresh kernel)",
            lambda: memory(python_k7, standin, plan.memory_runs, plan.memory_tokens),
        )
    results["context"] = timed("--context descriptions", lambda: context_times(5))
    results["engine"] = measure_engine(plan, python_k7)
    return results


def measure_engine(plan: Plan, python_k7: str) -> dict[str, Any]:
    """The real-engine row, or why it was skipped."""
    why = engine_unavailable()
    if why:
        print(f"… real engine row skipped: {why}")
        return {"skipped": why}
    return timed(
        "%%ollama vs openai, real engine",
        lambda: engine_row(python_k7, plan.engine_runs, plan.warmup),
    )


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The keys the issue asks for, from the detailed figures."""
    t, bound = results["throughput"], results["throughput_client_bound"]
    overshoot = [
        results["timeouts"][kind]["end_to_end_overshoot_ms"]["p95"]
        for kind in ("connect", "read", "total")
    ]
    stop_k6 = results.get("stop_k6")
    return {
        "throughput_ratio_vs_httpx": t["ratio_vs_httpx"],
        "throughput_ratio_vs_ollama_client": t["ratio_vs_ollama_client"],
        "throughput_client_bound_ratio_vs_httpx": bound["ratio_vs_httpx"],
        "throughput_client_bound_ratio_vs_ollama_client": bound["ratio_vs_ollama_client"],
        "ui_updates_per_s_max": results["ui_updates"]["per_s_max"],
        "iopub_bytes_ratio_100k": results["iopub"]["100000"]["ratio"],
        "first_text_ms_p95": results["first_text"]["chunk_to_first_text_ms"]["p95"],
        "stop_click_to_close_ms_p95_k7": results["stop_k7"]["click_to_server_close_ms"]["p95"],
        "stop_click_to_close_ms_p95_k6": (
            stop_k6["click_to_server_close_ms"]["p95"] if stop_k6 else None
        ),
        "timeout_overshoot_ms_p95": max(overshoot),
        "rss_growth_ratio_2mb": results["memory"]["ratio"]["median"],
        "cpu_s_per_1k_tokens": results["cpu"]["kernel_cpu_s_per_1k_tokens"]["median"],
        "context_ms_5m_rows": results["context"]["dataframe_5m_rows"]["ms"]["median"],
        "context_ms_200mb_str": results["context"]["str_200mb"]["ms"]["median"],
    } | _user_headline(results)


def _engine_headline(results: dict[str, Any]) -> dict[str, Any]:
    row = results.get("engine", {})
    if "wall_s" not in row:
        return {}
    return {
        f"engine_{what}_ratio_vs_{other}": row[f"{what}_ratio_vs_{other}"]
        for what in ("wall", "first_text", "iopub")
        for other in ("openai_sync", "openai_async")
    }


def _user_headline(results: dict[str, Any]) -> dict[str, Any]:
    alt, nb = results["alternatives"], results["saved_notebook"]
    out: dict[str, Any] = {}
    for tokens in ("2000", "20000"):
        k = f"{int(tokens) // 1000}k"
        for other in ("official_sync", "official_async"):
            out[f"alt_wall_ratio_vs_{other}_{k}"] = alt[tokens][f"wall_ratio_vs_{other}"]
            out[f"alt_iopub_ratio_vs_{other}_{k}"] = alt[tokens][f"iopub_ratio_vs_{other}"]
    out["first_text_ms_p95"] = alt["first_text_ms_p95"]
    out["busy_round_trip_p95_extra_ms"] = results["responsiveness"]["p95_extra_ms"]
    for tokens in nb:  # --quick measures smaller sizes: its keys differ
        k = f"{int(tokens) // 1000}k"
        out[f"saved_bytes_ratio_{k}"] = nb[tokens]["ollama_nb_ratio"]
        out[f"saved_bytes_ratio_jupyter_ai_{k}"] = nb[tokens]["jupyter_ai_ratio"]
    return out | _engine_headline(results)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.readme:
        print(readme(json.loads(Path(args.out).read_text())))
        return 0
    # Every figure once, no warm-up rounds: a smoke run, its figures are not to be quoted;
    # and smaller answers for memory (~210 KB) and the saved notebook (1k, 10k tokens).
    quick = Plan(
        1, 1, 3, 1, 1, alt_runs=1, resp_cells=10, warmup=0, memory_tokens=29_500,
        notebook_tokens=(1_000, 10_000), engine_runs=1,
    )  # fmt: skip
    plan = quick if args.quick else Plan()
    if args.only == "engine":
        return _only_engine(plan, args.python_k7, Path(args.out))
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = measure(plan, args.python_k7, args.python_k6)
    machine = _machine(results.pop("_k7"), results.pop("_k6", None), load_before)
    report = headline(results) | results | {"machine": machine}
    report["bench_seconds"] = round(time.monotonic() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print()
    print(details(report))
    print(f"\nmachine: {json.dumps(machine)}")
    print(f"wrote {args.out} in {report['bench_seconds']} s")
    return 0


def _only_engine(plan: Plan, python_k7: str, out: Path) -> int:
    """Measure the real-engine row alone; merge it (and its headline) into `out`."""
    report = json.loads(out.read_text())
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    report["engine"] = measure_engine(plan, python_k7)
    report = {k: v for k, v in report.items() if not k.startswith("engine_")}  # none stale
    report |= _engine_headline(report)
    report["machine"]["engine_row"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print()
    print(details(report))
    print(f"wrote the engine row into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
