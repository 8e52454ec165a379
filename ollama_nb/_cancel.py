"""How a Python API call ends when it is interrupted or cancelled.

A KeyboardInterrupt raised inside an asyncio Task is not kept in the Task: asyncio lets
it out of the event loop, which ends a kernel (and `asyncio.run` in a script). So:

- a **real interrupt** (■, Ctrl-C) of a cell that awaits `agenerate`/`amap` itself is
  `RequestInterrupted` (one line, Run All halts), carrying what arrived (`.partial`). In
  an async cell ipykernel turns SIGINT into a cancellation of the cell's own task, and
  IPython catches what that task raises before asyncio sees it;
- **any other cancellation** — `asyncio.wait_for`, `asyncio.timeout`, `task.cancel()`,
  a `gather` cancelled with its cell — stays a `CancelledError` (so `wait_for` raises
  TimeoutError), and the kernel or script goes on. Where it reaches a cell, it reads as
  one line, not as a traceback through this package and asyncio. (It stays the plain
  class: Python 3.11's `asyncio.timeout` converts only `CancelledError` itself.)

Telling them apart: `asyncio.timeout` (and `wait_for` from Python 3.12) cancel the very
task they run in, the cell's too, exactly as ipykernel does on SIGINT, and
`Task.cancelling()` does not say who asked (nor exists on 3.10). So while a call runs in
the cell's own task, a wrapper around the SIGINT handler counts the signals: the call was
interrupted if one came. A cancellation in any other task stays a cancellation.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

from ._exceptions import RequestInterrupted

CELL_COROUTINE = "run_cell_async"  # IPython's: what ipykernel runs an async cell in


class InterruptedInTool(asyncio.CancelledError):
    """A real interrupt that travels as a cancellation. Interrupt inside a running tool
    raises KeyboardInterrupt there (ipykernel's handler, and so the counter, never sees
    it), and a KeyboardInterrupt must not cross the event loop; `Call` reads this one as
    the interrupt it is when the call runs in the cell's own task."""


class _SigintCounter:
    """Counts SIGINTs, then hands each to the handler it replaced (ipykernel's, which
    cancels the running cell). Shared by the calls of one cell; dropped when ipykernel
    puts its own handler back at the end of the cell."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.count = 0
        self.users = 0

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        self.count += 1
        return self.previous(signum, frame)


class _OneLine:
    """A cancellation's `_render_traceback_` (IPython shows it instead of the traceback);
    an object rather than a closure, so that the error still pickles."""

    def __init__(self, line: str) -> None:
        self.line = line

    def __call__(self) -> list[str]:
        return [self.line]


class Call:
    """One API call: where it runs, and what it produced so far (`keep`).

    Use `with call:` around the call's work; an interrupt or cancellation leaves it as the
    module docstring says: `message` for an interrupt, `cancelled` for a cancellation."""

    def __init__(self, message: str, cancelled: str) -> None:
        self.message = message
        self.cancelled = cancelled
        self.partial: Any = None
        self._task = _current_task()
        self._counter: _SigintCounter | None = None
        self._seen = 0
        self._in_cell = False

    def keep(self, partial: Any) -> None:
        """What the call produced so far (its result or batch, however it ended)."""
        self.partial = partial

    def __enter__(self) -> Call:
        self._in_cell = self._task is not None and in_cell_task(self._task)
        if self._in_cell:
            self._counter = _count_sigints()
            if self._counter is not None:
                self._seen = self._counter.count
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> None:
        counter, self._counter = self._counter, None
        if counter is not None:
            _release(counter)
        if not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            return
        root = _root(exc)
        cancelled = isinstance(root, asyncio.CancelledError) or self._cancel_requested()
        interrupted = (counter is not None and counter.count > self._seen) or (
            isinstance(root, InterruptedInTool) and self._in_cell
        )
        if cancelled and not interrupted:
            # A cancellation: it stays one, wherever the call runs.
            if not isinstance(root, asyncio.CancelledError):
                root = asyncio.CancelledError()
            root._render_traceback_ = _OneLine(f"CancelledError: {self.cancelled}")  # type: ignore[attr-defined]
            raise root from None
        raise self.interrupted() from None

    def interrupted(self) -> RequestInterrupted:
        """The error for a real interrupt, with what arrived. (A synchronous call can only
        be interrupted: asyncio cannot cancel code that blocks its loop.)"""
        error = RequestInterrupted(self.message)
        error.partial = self.partial
        return error

    def _cancel_requested(self) -> bool:
        """Whether this call's task was asked to cancel (Python 3.11+; on 3.10 only the
        exception tells): a safeguard should a KeyboardInterrupt have been raised for it."""
        cancelling = getattr(self._task, "cancelling", None)
        return cancelling is not None and cancelling() > 0


def in_cell_task(task: asyncio.Task[Any]) -> bool:
    """Whether `task` is the one IPython runs a cell in (not one the cell created)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_name == CELL_COROUTINE


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: synchronous code
        return None


def _root(exc: BaseException) -> BaseException:
    """The interrupt or cancellation that `exc` was raised for: this package re-raises
    them as RequestInterrupted (`raise ... from None` keeps the original as context)."""
    while isinstance(exc, RequestInterrupted) and exc.__context__ is not None:
        if not isinstance(exc.__context__, (asyncio.CancelledError, KeyboardInterrupt)):
            break
        exc = exc.__context__
    return exc


def _count_sigints() -> _SigintCounter | None:
    """The counter on SIGINT now (put there if it is not); None where signal handlers
    cannot be set (a thread other than the main one) or SIGINT is not a handler's."""
    if threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(signal.SIGINT)
    if not callable(current) or current is signal.default_int_handler:
        # SIGINT is not turned into a cancellation (terminal IPython): it raises
        # KeyboardInterrupt where it lands, which needs no telling apart.
        return None
    if isinstance(current, _SigintCounter):
        counter = current
    else:
        counter = _SigintCounter(current)
        signal.signal(signal.SIGINT, counter)
    counter.users += 1
    return counter


def _release(counter: _SigintCounter) -> None:
    counter.users -= 1
    # Put the handler back only if the counter is still on SIGINT: when the cell ended,
    # ipykernel has put its own back already, and a newer cell may have set another.
    if counter.users == 0 and signal.getsignal(signal.SIGINT) is counter:
        signal.signal(signal.SIGINT, counter.previous)
