"""Keep the event loop waking while a request waits, so that a kernel interrupt is seen.

ipykernel turns a kernel interrupt of an async cell into the cancellation of the cell's
coroutine, scheduled from its SIGINT handler with tornado's `add_callback`, which on its
own loop's thread is a plain `call_soon`: it does not wake a loop asleep in `select`.
The cancellation then runs at the loop's next event, and a server that accepted the
connection and stays silent (a dead tunnel, a stuck proxy) gives none until the read
timeout. Streams refresh their view on a ticker, which wakes the loop anyway; every other
wait (line commands, the model listing of a cell without a model, the vision check of
`--image`, a batch's first-element check) runs under `loop_stays_awake`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

WAKE_SECONDS = 0.1  # an interrupt is seen at most this late (the contract says 1 s)


@contextlib.asynccontextmanager
async def loop_stays_awake() -> AsyncIterator[None]:
    """While the block runs, the loop wakes every `WAKE_SECONDS` (a timer, nothing else)."""
    waker = asyncio.ensure_future(_wake())
    try:
        yield
    finally:
        waker.cancel()


async def _wake() -> None:
    while True:
        await asyncio.sleep(WAKE_SECONDS)
