"""Run a request from synchronous code: terminal IPython, or a kernel with `%autoawait off`.

The request runs on an event loop in a worker thread (the kernel's own loop is busy
running this very cell, and nest_asyncio would lose shell messages). View calls are
queued back to the calling thread, which owns the widgets and the cell's output; that
thread also takes Ctrl-C / kernel interrupts (as a SIGINT handler, so that none can cut a
view call short) and cancels the request, so the response is closed and the record shown
before the interrupt is re-raised as one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

from ._exceptions import RequestInterrupted
from ._result import OllamaResult
from ._stream import Transcript, View

T = TypeVar("T")
_DONE = object()
POLL_SECONDS = 0.2
GRACE_SECONDS = 0.25  # see _Grace


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

    async def run_on_caller(self, func: Callable[[], T]) -> T:
        """Run `func` (a tool) on the calling thread, which owns the cell: the notebook's
        state, its main-thread-only libraries, and an Interrupt that reaches the tool."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            value = func()  # tools' own exceptions are values here (`_tools.run_call`)
            with contextlib.suppress(RuntimeError):  # the worker's loop closed meanwhile
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(value))

        self._calls.put(("run", run))
        return await done


def run_in_thread(make: Callable[[View], Coroutine[Any, Any, T]], view: View) -> T:
    """Run `make(queued_view)` to completion on a worker loop; replay view calls here.

    An interrupt (however many, however close together) only cancels the request: the
    calls replayed here, `finish` included, always run whole, so the live view is always
    replaced by its record and its widgets closed, and one RequestInterrupted follows.
    """
    calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
    state: dict[str, Any] = {}

    def work() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(make(QueuedView(calls)))
            state["loop"], state["task"] = loop, task
            if state.get("cancel"):  # interrupted before the task existed
                task.cancel()
            state["value"] = loop.run_until_complete(task)
        except BaseException as exc:
            state["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())  # DNS lookups' threads
            loop.close()
            calls.put(_DONE)

    def cancel() -> None:
        state["cancel"] = True
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: done anyway
                loop.call_soon_threadsafe(task.cancel)

    worker = threading.Thread(target=work, name="ollama-nb-request", daemon=True)
    with _interrupts_cancel(cancel):
        worker.start()
        while True:
            try:
                item = calls.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _DONE:
                break
            method, argument = item
            if method == "run":  # a tool, asked for by `QueuedView.run_on_caller`
                _run_tool(argument, lambda: bool(state.get("cancel")), cancel)
                continue
            getattr(view, method)(argument)
        worker.join()
    if state.get("cancel"):
        error = state.get("error")  # the request's own wording of it, if it has one
        raise error if isinstance(error, RequestInterrupted) and error.args else RequestInterrupted
    if "error" in state:
        raise state["error"]
    return state["value"]


def _run_tool(
    run: Callable[[], None], cancelled: Callable[[], bool], cancel: Callable[[], None]
) -> None:
    """Run a queued tool here, where SIGINT now raises KeyboardInterrupt (which the tool's
    own wrapper turns into an interrupted call). The handler is swapped *before* the check
    for an earlier interrupt, so that no Ctrl-C can fall between the two: one that came
    first is seen by the check (the tool never starts), one after raises in the tool."""
    if threading.current_thread() is not threading.main_thread():
        if not cancelled():
            run()
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not cancelled():
            run()
    except KeyboardInterrupt:  # between the swap and the tool's own wrapper, or after it
        cancel()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _interrupts_cancel(cancel: Callable[[], None]) -> Iterator[None]:
    """While the request runs, SIGINT (Ctrl-C, a kernel interrupt) calls `cancel` instead of
    raising KeyboardInterrupt wherever the main thread happens to be."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    fired = False

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        fired = True
        cancel()

    previous = _Grace.original(signal.signal(signal.SIGINT, on_sigint))
    try:
        yield
    finally:
        if fired:
            _Grace(previous).start()
        else:
            signal.signal(signal.SIGINT, previous)


class _Grace:
    """After an interrupt ended a request, swallow SIGINTs for a moment before handing
    SIGINT back: a second click of Interrupt a few ms after the first would otherwise land
    while the kernel sends the cell's reply, and ipykernel then loses that reply."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        pass  # a straggler of the interrupt that already ended the request

    @staticmethod
    def original(handler: Any) -> Any:
        """The handler to restore in the end: the one before any grace period."""
        return handler.previous if isinstance(handler, _Grace) else handler

    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()  # the kernel's loop, running this cell
        except RuntimeError:  # terminal IPython: no loop to end the grace period on
            signal.signal(signal.SIGINT, self.previous)
            return
        signal.signal(signal.SIGINT, self)
        loop.call_later(GRACE_SECONDS, self.end)

    def end(self) -> None:
        if signal.getsignal(signal.SIGINT) is self:  # not taken over by a newer request
            signal.signal(signal.SIGINT, self.previous)
