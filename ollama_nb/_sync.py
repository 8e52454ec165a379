"""Run a request from synchronous code: terminal IPython, or a kernel with `%autoawait off`.

The request runs on an event loop in a worker thread (the kernel's own loop is busy
running this very cell, and nest_asyncio would lose shell messages). View calls are
queued back to the calling thread, which owns the widgets and the cell's output; that
thread also catches Ctrl-C / kernel interrupts and cancels the request, so the response
is closed before the interrupt is re-raised.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._exceptions import RequestInterrupted
from ._result import OllamaResult
from ._stream import Transcript, View

T = TypeVar("T")
_DONE = object()
POLL_SECONDS = 0.2


class QueuedView:
    """Stands in for a view on the worker thread; the caller's thread replays the calls."""

    def __init__(self, calls: queue.SimpleQueue[Any]) -> None:
        self._calls = calls

    def start(self, model: str) -> None:
        self._calls.put(("start", model))

    def update(self, transcript: Transcript) -> None:
        self._calls.put(("update", transcript))

    def finish(self, result: OllamaResult) -> None:
        self._calls.put(("finish", result))


def run_in_thread(make: Callable[[View], Coroutine[Any, Any, T]], view: View) -> T:
    """Run `make(queued_view)` to completion on a worker loop; replay view calls here."""
    calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
    state: dict[str, Any] = {}
    started = threading.Event()

    def work() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(make(QueuedView(calls)))
            state["loop"], state["task"] = loop, task
            started.set()
            state["value"] = loop.run_until_complete(task)
        except BaseException as exc:
            state["error"] = exc
        finally:
            started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())  # DNS lookups' threads
            loop.close()
            calls.put(_DONE)

    worker = threading.Thread(target=work, name="ollama-nb-request", daemon=True)
    worker.start()
    interrupted = False
    while True:
        try:
            item = calls.get(timeout=POLL_SECONDS)
            if item is _DONE:
                break
            method, argument = item
            getattr(view, method)(argument)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            interrupted = True
            started.wait()
            if "task" in state:
                state["loop"].call_soon_threadsafe(state["task"].cancel)
    worker.join()
    if interrupted:
        raise RequestInterrupted
    if "error" in state:
        raise state["error"]
    return state["value"]
