"""Benchmark of replay (the cache file, `ollama_nb._cache`), with no server at all.

Run (from the repository root, after `tests/run` made .venv)::

    .venv/bin/python bench/replay.py            # 100,000 elements
    .venv/bin/python bench/replay.py --items 10000

Figures (printed, and written to bench/replay_results.json)
- a batch (`ollama_nb.map`, display=False) of N elements, every one recorded in the
  cache file: wall and CPU time of the whole call (goal for 100,000: < 2 s), per element;
- one replayed request (`ollama_nb.generate`, display=False): time per call;
- the index of a ~100 MB cache file: wall and CPU time of its first load (goal < 1 s),
  and one lookup.
The host is a closed port: a request sent by mistake would fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ollama_nb  # noqa: E402
from ollama_nb import OllamaResult  # noqa: E402
from ollama_nb._batch import prepare_batch  # noqa: E402
from ollama_nb._cache import CacheFile, entry_line  # noqa: E402
from ollama_nb._request import Ask  # noqa: E402

TEMPLATE = "Summarise ticket {item} in one line."
HOST = "http://127.0.0.1:9"  # discard port: nothing listens


def _record(path: Path, items: list[int]) -> None:
    """Entries for every element, under the keys the batch computes."""
    job = asyncio.run(
        prepare_batch(
            Ask(prompt=TEMPLATE, model="stand-in", host=HOST, cache=str(path)),
            items,
            1,
            configured={},
            namespace={},
        )
    )
    assert job.keys is not None
    with open(path, "wb") as file:
        for item in items:
            prompt = TEMPLATE.format(item=item)
            result = OllamaResult(
                model="stand-in",
                text=f"Ticket {item}: a printer that will not print.",
                done_reason="stop",
                elapsed=0.25,
                ttft=0.05,
                eval_count=12,
                prompt_eval_count=9,
                tokens_per_second=12 / 200000000 * 1e9,  # as build_result computes it
                chunks=12,
                prompt=prompt,
                settings={"options": {}, "think": None, "format": None},
                final={
                    "done_reason": "stop",
                    "eval_count": 12,
                    "eval_duration": 200000000,
                    "prompt_eval_count": 9,
                },
            )
            file.write(entry_line(job.keys.key(prompt), result, "/api/generate"))


def _timed(call):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = call()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    figures: dict[str, object] = {"load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "answers.jsonl"
        items = list(range(args.items))
        _record(path, items)
        figures["file_bytes"] = path.stat().st_size
        batch, wall, cpu = _timed(
            lambda: ollama_nb.map(
                TEMPLATE, items, "stand-in", host=HOST, cache=str(path), display=False
            )
        )
        assert batch.replayed == len(items) and batch.counts() == {"stop": len(items)}
        figures.update(
            batch_items=len(items),
            batch_wall_s=wall,
            batch_cpu_s=cpu,
            per_element_us=wall / len(items) * 1e6,
        )
        print(
            f"batch of {len(items):,} replayed: {wall:.2f} s wall, {cpu:.2f} s CPU"
            f" ({wall / len(items) * 1e6:.1f} µs per element)"
        )

        calls = 200
        _, wall, cpu = _timed(
            lambda: [
                ollama_nb.generate(
                    TEMPLATE.format(item=i), "stand-in", host=HOST, cache=str(path), display=False
                )
                for i in range(calls)
            ]
        )
        figures["generate_replay_ms"] = wall / calls * 1e3
        print(f"one replayed generate(): {wall / calls * 1e3:.2f} ms")

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "big.jsonl"
        sample = OllamaResult(model="m", text="word " * 180, done_reason="stop", prompt="p")
        n = 0
        with open(path, "wb") as file:
            while file.tell() < 100 * 1024 * 1024:
                file.write(entry_line(f"{n:064x}", sample, "/api/generate", when=0))
                n += 1
        cache = CacheFile(str(path))
        _, wall, cpu = _timed(cache.refresh)
        _, lookup, _ = _timed(lambda: [cache.get(f"{i:064x}", refresh=False) for i in range(1000)])
        figures.update(
            load_100mb_wall_s=wall,
            load_100mb_cpu_s=cpu,
            entries_100mb=n,
            lookup_us=lookup / 1000 * 1e6,
        )
        print(
            f"100 MB file ({n:,} entries): index in {wall:.3f} s wall, {cpu:.3f} s CPU;"
            f" one lookup {lookup / 1000 * 1e6:.1f} µs"
        )
    print(f"load average {figures['load_average']:.1f}")
    out = Path(__file__).with_name("replay_results.json")
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
