"""`%%ollama` against a real inference engine beside the `openai` client, in one kernel.

The engine is llama.cpp (llama-cpp-python's server, from `.venv-engine`, which
`tests/run` builds) serving the tiny random-weight model of tests/engine/make_model.py,
started here with tests/engine_server.py. Contenders, each streaming the same request
(model `tiny`, one user message, `max_tokens`, temperature 0: the same answer every time):
(a) `openai.OpenAI` in a sync cell and (b) `openai.AsyncOpenAI` in an async cell, each
printing every delta as a user would (clients made in an earlier cell: their best case),
and (c) `%%ollama tiny --host http://127.0.0.1:PORT/v1`. Figures per contender: cell wall
time (execute_request -> execute_reply), first visible text (the engine's first response
byte -> the first IOPub message carrying answer text) and IOPub bytes.

The first byte is seen by a pass-through proxy in this process (same `time.monotonic()`
clock as the kernel driver's messages); every contender goes through it alike.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _alternatives import _first_text_at, _median_ratio
from _kernel import ROOT, BenchKernel, CellRun
from _stats import ms, summary
from engine_server import MODEL, EngineServer, ForwardingProxy
from kernel_driver import Cell

ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"
ENGINE_TOKENS = 256  # max_tokens: the random model never stops early (no EOS)
PROMPT = "Tell me about the sea."
ENGINE_NAMES = ("openai_sync", "openai_async", "ollama_nb")

_REQUEST = (
    f"model={MODEL!r}, messages=[{{'role': 'user', 'content': {PROMPT!r}}}],"
    f" max_tokens={ENGINE_TOKENS}, temperature=0, stream=True"
)
SETUP_CELL = (
    "import openai\n"
    "sync_client = openai.OpenAI(base_url={url!r}, api_key='none')\n"
    "async_client = openai.AsyncOpenAI(base_url={url!r}, api_key='none')"
)
ENGINE_CELLS = {
    "openai_sync": (
        f"for chunk in sync_client.chat.completions.create({_REQUEST}):\n"
        "    if chunk.choices and chunk.choices[0].delta.content:\n"
        "        print(chunk.choices[0].delta.content, end='')"
    ),
    "openai_async": (
        f"async for chunk in await async_client.chat.completions.create({_REQUEST}):\n"
        "    if chunk.choices and chunk.choices[0].delta.content:\n"
        "        print(chunk.choices[0].delta.content, end='')"
    ),
    "ollama_nb": (
        f"%%ollama {MODEL} --host {{url}} -o num_predict={ENGINE_TOKENS} -o temperature=0\n{PROMPT}"
    ),
}


class FirstByteProxy(ForwardingProxy):
    """Forwards TCP to the engine and notes when the first byte of each chat completion's
    response came back (keep-alive connections carry several requests)."""

    def __init__(self, upstream_port: int) -> None:
        self.response_starts: list[float] = []
        super().__init__(upstream_port)

    def connection_state(self) -> threading.Event:
        return threading.Event()  # a chat request went up; its answer has not begun

    def up(self, data: bytes, waiting: threading.Event) -> bytes | None:
        if data.startswith(b"POST ") and b"/chat/completions" in data.split(b"\r\n")[0]:
            waiting.set()
        return data

    def down(self, data: bytes, waiting: threading.Event) -> bytes | None:
        if waiting.is_set():
            self.response_starts.append(time.monotonic())
            waiting.clear()
        return data


def engine_python() -> Path:
    """The engine's python: tests/run's $OLLAMA_NB_ENGINE_PYTHON, else .venv-engine's."""
    return Path(os.environ.get("OLLAMA_NB_ENGINE_PYTHON") or ENGINE_PYTHON)


def engine_unavailable() -> str | None:
    """Why the engine row cannot run here, or None."""
    if os.environ.get("OLLAMA_NB_ENGINE_ERROR"):  # tests/run did not set the engine up
        return os.environ["OLLAMA_NB_ENGINE_ERROR"]
    python = engine_python()
    if not python.exists():
        return f"no {python} (tests/run builds it when it runs tests/test_engine.py)"
    try:
        import openai  # noqa: F401
    except ImportError:
        return "the openai package is not installed (pip install -e '.[test]')"
    return None


def _cell(kernel: BenchKernel, proxy: FirstByteProxy, name: str) -> tuple[CellRun, float, str]:
    """One cell of contender `name`: its run, first-visible-text delay (s), answer text."""
    driver = kernel.driver
    driver.value("globals().pop('_ollama', None) is None")
    starts = len(proxy.response_starts)
    cpu = kernel.cpu_seconds()
    code = ENGINE_CELLS[name].replace("{url}", proxy.url)
    # %%ollama: as a front end that draws the view as soon as it arrives
    cell = driver.submit_drawn(code, 10) if name == "ollama_nb" else driver.submit(code)
    run = kernel.complete(cell, cpu, timeout=120)
    first = _first_text_at(cell, kernel.last_messages)
    if run.status != "ok" or first is None or len(proxy.response_starts) != starts + 1:
        raise RuntimeError(f"{name} against the engine failed: {run.status} {cell.error_text()}")
    return run, first - proxy.response_starts[starts], _text(kernel, cell, run)


def _text(kernel: BenchKernel, cell: Cell, run: CellRun) -> str:
    if run.result:  # %%ollama: the result it stored
        if run.result.get("done_reason") != "length":
            raise RuntimeError(f"%%ollama against the engine: {run.result}")
        return str(kernel.driver.value("_ollama.text"))
    return cell.stream_text("stdout")


def engine_row(python_k7: str, runs: int, warmup: int = 1) -> dict[str, Any]:
    """Start the engine, then rounds of (a), (b), (c) in a rotated order in one kernel."""
    with tempfile.TemporaryDirectory(prefix="ollama-nb-engine-") as tmp:
        engine = EngineServer(str(engine_python()), Path(tmp))
        proxy = FirstByteProxy(engine.port)
        try:
            with BenchKernel(python_k7, proxy.url) as kernel:
                kernel.driver.ok(SETUP_CELL.format(url=proxy.url))
                return _rounds(kernel, proxy, runs, warmup)
        finally:
            proxy.close()
            engine.close()


def _rounds(kernel: BenchKernel, proxy: FirstByteProxy, runs: int, warmup: int) -> dict[str, Any]:
    wall: dict[str, list[float]] = {n: [] for n in ENGINE_NAMES}
    first: dict[str, list[float]] = {n: [] for n in ENGINE_NAMES}
    iopub: dict[str, list[float]] = {n: [] for n in ENGINE_NAMES}
    texts: set[str] = set()
    for round_ in range(runs + warmup):
        shift = round_ % len(ENGINE_NAMES)
        for name in ENGINE_NAMES[shift:] + ENGINE_NAMES[:shift]:
            run, delay, text = _cell(kernel, proxy, name)
            texts.add(" ".join(text.split()))
            if round_ >= warmup:
                wall[name].append(run.wall)
                first[name].append(delay)
                iopub[name].append(run.iopub_bytes)
    if len(texts) != 1:  # temperature 0: every contender must have shown the same answer
        raise RuntimeError(f"the contenders' answers differ: {sorted(texts)[:3]}")
    row: dict[str, Any] = {
        "tokens": ENGINE_TOKENS,
        "answer_chars": len(texts.pop()),
        "wall_s": {n: summary(v) for n, v in wall.items()},
        "first_text_ms": {n: summary(ms(v), 1) for n, v in first.items()},
        "iopub_bytes": {n: summary(v, 0) for n, v in iopub.items()},
    }
    for other in ("openai_sync", "openai_async"):
        row[f"wall_ratio_vs_{other}"] = _median_ratio(wall["ollama_nb"], wall[other])
        row[f"first_text_ratio_vs_{other}"] = _median_ratio(first["ollama_nb"], first[other])
        row[f"iopub_ratio_vs_{other}"] = _median_ratio(iopub["ollama_nb"], iopub[other])
    return row
