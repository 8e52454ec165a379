"""How Interrupt (■, Ctrl-C) reaches a tool's function running on the main thread.

A tool blocks the thread that runs it, so neither ipykernel's cancellation (a callback
the blocked loop would run only afterwards) nor the synchronous path's cancel can stop
it: SIGINT has to raise KeyboardInterrupt inside the function itself.

- `sigint_noted`: from the moment a call shows as running until its function starts,
  SIGINT is only noted (`SigintNote`); the function then does not start.
- `interrupt_raises_here`: while the function runs, SIGINT raises KeyboardInterrupt in it.
- `_Nudge`: CPython runs a Python signal handler only between bytecodes. A SIGINT that
  lands in the instant between the function's last bytecode and a blocking system call
  (`time.sleep`, a socket read) is taken by the C handler but does not interrupt that
  call, which then blocks for its whole length. The nudge wakes the main thread so that
  it raises at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

NUDGE_AFTER_SECONDS = 0.05  # a SIGINT not raised by then is stuck behind a system call
_STOP = b"\0"  # never a signal's number


class SigintNote:
    """SIGINT's handler from the moment a call shows as running until its function starts:
    it only notes the signal. ipykernel's own handler would cancel the cell once the
    loop ran again, i.e. after a function that blocks it had returned."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.fired = False
        self.taken = False  # the tool's start read it: the call ends as interrupted

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.fired = True


@contextlib.contextmanager
def sigint_noted() -> Iterator[SigintNote | None]:
    """Note SIGINTs until a tool's function starts (`interrupt_raises_here` takes the
    note off). A noted SIGINT no tool took is handed on when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield None  # the synchronous path: its calling thread takes SIGINT (`_sync`)
        return
    note = SigintNote(signal.getsignal(signal.SIGINT))
    signal.signal(signal.SIGINT, note)
    try:
        yield note
    finally:
        if signal.getsignal(signal.SIGINT) is note:  # no function started (a refused call)
            signal.signal(signal.SIGINT, note.previous)
        if note.fired and not note.taken and callable(note.previous):
            note.previous(signal.SIGINT, None)


@contextlib.contextmanager
def interrupt_raises_here(note: SigintNote | None = None) -> Iterator[None]:
    """While a tool runs on the main thread, SIGINT raises KeyboardInterrupt in it, even
    one that lands just before a blocking system call (`_Nudge`). A SIGINT noted since
    the call showed as running raises at once (the handler is swapped first, so none
    falls between)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    restore = previous.previous if isinstance(previous, SigintNote) else previous
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if note is not None and note.fired:
            note.taken = True
            raise KeyboardInterrupt
        with _Nudge.while_running():
            yield
    finally:
        signal.signal(signal.SIGINT, restore)


class _Nudge:
    """While a tool runs on the main thread: a SIGINT that has not ended it within
    `NUDGE_AFTER_SECONDS` is followed by a SIGURG sent to the main thread itself.

    The C-level handler of every Python-handled signal writes the signal's number to the
    wakeup fd, whichever thread took it; a watcher thread reads it here. SIGURG (caught by
    a handler that does nothing, and ignored by default) makes the blocked system call
    return with EINTR, upon which CPython runs the pending SIGINT handler, which raises.
    A nudge that comes late is harmless: calls are retried after EINTR (PEP 475), and once
    SIGURG's default is back the kernel drops it."""

    def __init__(self, forward_to: int, read: int) -> None:
        self._forward_to = forward_to  # the wakeup fd someone else had set, or -1
        self._read = read
        self._running = True
        self._lock = threading.Lock()  # no nudge after the tool has ended
        self._main = threading.main_thread().ident

    @classmethod
    @contextlib.contextmanager
    def while_running(cls) -> Iterator[None]:
        if not hasattr(signal, "pthread_kill") or signal.getsignal(signal.SIGURG) not in (
            signal.SIG_DFL,
            _wake_only,  # left by a tool whose clean-up an interrupt cut short
        ):
            yield  # no way to nudge, or SIGURG is someone's: a stuck SIGINT waits its call
            return
        read, write = os.pipe()
        os.set_blocking(write, False)  # as set_wakeup_fd requires
        forward_to = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGURG, _wake_only)
        nudge = cls(forward_to, read)
        threading.Thread(target=nudge._watch, name="ollama-nb-nudge", daemon=True).start()
        try:
            yield
        finally:
            # Ordered so that an interrupt landing in this clean-up leaves nothing harmful:
            # no nudge after the tool, and `write` closed only once it is no wakeup fd.
            with nudge._lock:
                nudge._running = False
            try:
                signal.set_wakeup_fd(forward_to)
                os.write(write, _STOP)  # the watcher returns and closes its end
                os.close(write)
            finally:
                signal.signal(signal.SIGURG, signal.SIG_DFL)  # a nudge on its way: dropped

    def _watch(self) -> None:
        deadline: float | None = None  # a SIGINT came: nudge unless the tool ends by then
        while True:
            ready, _, _ = select.select([self._read], [], [], deadline)
            if not ready:  # the SIGINT is still not raised: the main thread is blocked
                self._send()
                deadline = None
                continue
            data = os.read(self._read, 512)
            if self._forward_to != -1:
                with contextlib.suppress(OSError):
                    os.write(self._forward_to, data.replace(_STOP, b""))
            if _STOP in data or not data:  # not data: the write end is closed
                os.close(self._read)
                return
            if signal.SIGINT in data and deadline is None:
                deadline = NUDGE_AFTER_SECONDS

    def _send(self) -> None:
        with self._lock:
            if self._running and self._main is not None:
                signal.pthread_kill(self._main, signal.SIGURG)


def _wake_only(_signum: int, _frame: FrameType | None) -> None:
    """SIGURG's handler while a tool runs: the signal only ends a blocked system call."""
