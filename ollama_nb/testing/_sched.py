"""Loaded models and request scheduling, after Ollama's scheduler (``server/sched.go``).

- A model is loaded by the first request that uses it and stays loaded for its keep-alive
  (``keep_alive`` of the latest request that set one; 5 minutes for a new model) after
  its last request ends: ``0`` unloads it as soon as it is idle, a negative value never.
  ``/api/ps`` lists the loaded models, the one that stays longest first.
- Each loaded model serves ``num_parallel`` requests at once (``OLLAMA_NUM_PARALLEL``);
  further requests wait their turn in arrival order (Ollama's runner semaphore is FIFO)
  and receive nothing meanwhile, not even headers, so a client's read timeout runs while
  it waits. A request whose client disconnects leaves the queue at once.
- More than ``max_queue`` waiting requests (all models together, ``OLLAMA_MAX_QUEUE``):
  the next one gets a 503 with Ollama's ``ErrMaxQueue`` text. (In Ollama this bound is on
  the scheduler's queue of requests waiting for a model to be loaded; the stand-in applies
  it to every waiting request, so a client can meet the 503 without a 512-model setup.)

Everything here runs on the server's event loop, so no locks: the test thread resets it
through the loop (``StandInServer.reset``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from ._fields import DEFAULT_KEEP_ALIVE
from ._models import StandInModel
from ._record import RequestRecord

# Ollama's words, with its double space (server/sched.go, ErrMaxQueue).
MAX_QUEUE_ERROR: Final = "server busy, please try again.  maximum pending requests exceeded"
# What Go's time.Now().Add(math.MaxInt64) gives: about 292 years from now.
_FOREVER_DELTA: Final = timedelta(microseconds=(2**63 - 1) // 1000)


class QueueFull(Exception):
    """More requests wait than ``max_queue`` allows."""


def _now() -> datetime:
    return datetime.now().astimezone()


@dataclass
class Runner:
    """A loaded model: its keep-alive, the requests it serves and those waiting."""

    model: StandInModel
    keep_alive: float  # seconds; math.inf for "never unload"
    active: int = 0
    parallel: int = 1
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)
    expires_at: datetime | None = None  # None while busy

    def expiry(self) -> datetime:
        if self.expires_at is not None:
            return self.expires_at
        # Busy: as Ollama estimates it for a model in use, now plus the keep-alive.
        return _now() + (_FOREVER_DELTA if math.isinf(self.keep_alive) else _delta(self))

    def idle(self) -> bool:
        return self.active == 0 and not self.waiting


def _delta(runner: Runner) -> timedelta:
    return timedelta(seconds=runner.keep_alive)


class Scheduler:
    def __init__(self) -> None:
        self._runners: dict[str, Runner] = {}

    def reset(self) -> None:
        """Nothing loaded. Requests still running finish on their own (detached) runners."""
        self._runners = {}

    # -- loading -----------------------------------------------------------------------

    def load(self, model: StandInModel, keep_alive: float | None) -> Runner:
        """The model's runner, loading it if needed; a given keep_alive replaces the old."""
        self._expire()
        runner = self._runners.get(model.name.key)
        if runner is None:
            runner = Runner(model, DEFAULT_KEEP_ALIVE if keep_alive is None else keep_alive)
            self._runners[model.name.key] = runner
            runner.expires_at = _now() + (
                _FOREVER_DELTA if math.isinf(runner.keep_alive) else _delta(runner)
            )
        elif keep_alive is not None:
            runner.keep_alive = keep_alive
        return runner

    def loaded_only(self, runner: Runner) -> None:
        """A request that only loaded the model ended: the keep-alive starts (or unloads)."""
        if runner.idle():
            self._went_idle(runner)

    def unload(self, model: StandInModel) -> None:
        """``keep_alive: 0`` with nothing to generate: unload now, or when idle if busy."""
        runner = self._runners.get(model.name.key)
        if runner is not None:
            runner.keep_alive = 0.0
            if runner.idle():
                self._went_idle(runner)

    def loaded(self) -> list[tuple[StandInModel, datetime]]:
        """Loaded models with their unload time, the one that stays longest first."""
        self._expire()
        entries = [(r.model, r.expiry()) for r in self._runners.values()]
        return sorted(entries, key=lambda entry: entry[1], reverse=True)

    def _expire(self) -> None:
        now = _now()
        for key, runner in list(self._runners.items()):
            if runner.idle() and runner.expires_at is not None and runner.expires_at <= now:
                del self._runners[key]

    def _went_idle(self, runner: Runner) -> None:
        if self._runners.get(runner.model.name.key) is not runner:
            return  # detached by reset()
        if runner.keep_alive <= 0:
            del self._runners[runner.model.name.key]
        elif math.isinf(runner.keep_alive):
            runner.expires_at = _now() + _FOREVER_DELTA
        else:
            runner.expires_at = _now() + _delta(runner)

    # -- slots -------------------------------------------------------------------------

    def _waiting_total(self) -> int:
        return sum(len(r.waiting) for r in self._runners.values())

    async def acquire(
        self, runner: Runner, parallel: int, max_queue: int, record: RequestRecord
    ) -> None:
        """Wait for one of the runner's `parallel` slots; QueueFull past `max_queue`."""
        runner.parallel = parallel
        if runner.active < parallel and not runner.waiting:
            runner.active += 1
            runner.expires_at = None
            record.scheduled_at = time.monotonic()
            return
        if self._waiting_total() >= max_queue:
            raise QueueFull(MAX_QUEUE_ERROR)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        record.queue_position = len(runner.waiting)
        record.queued_at = time.monotonic()
        runner.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(runner)  # the slot came just as the client left: pass it on
            else:
                turn.cancel()
                if turn in runner.waiting:
                    runner.waiting.remove(turn)
            raise
        record.scheduled_at = time.monotonic()

    def release(self, runner: Runner) -> None:
        """A request ended: its slot goes to the first waiting request, if any."""
        runner.active -= 1
        while runner.waiting and runner.active < runner.parallel:
            turn = runner.waiting.popleft()
            if turn.done():
                continue  # its client left
            runner.active += 1
            turn.set_result(None)
        if runner.idle():
            self._went_idle(runner)
