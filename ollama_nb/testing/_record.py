"""What the stand-in remembers about each request, for tests to assert on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ._images import ReceivedImage


@dataclass
class RequestRecord:
    """One request as the stand-in saw and answered it.

    Times are ``time.monotonic()`` values of this process, so a test can compare them
    with its own clock readings. The server thread fills the fields in as handling goes
    on; read them after :meth:`wait_closed` for a settled view.
    """

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body, or None
    started_at: float
    knobs: dict[str, Any] = field(default_factory=dict)  # the effective knobs
    # Which TCP connection (1, 2, ... per server) carried the request: equal numbers on
    # successive requests show that the client reused the connection (keep-alive).
    connection_id: int = 0
    # Scheduling (generate, chat, embed): when the request began to wait for a free slot
    # of its model (None if it got one at once), how many requests were waiting ahead of
    # it then, and when it got its slot (None if it never did: refused or client left).
    queued_at: float | None = None
    queue_position: int | None = None
    scheduled_at: float | None = None
    # The images of the request (generate's `images`, then each chat message's), decoded:
    # bytes, format and pixel size.
    images: list[ReceivedImage] = field(default_factory=list)
    status: int = 0  # 0 until a status line was written
    first_byte_at: float | None = None  # when the response headers went out
    finished_at: float | None = None  # when handling ended, for any reason
    completed: bool = False  # the whole response, to its last byte, was written
    chunks_sent: int = 0  # NDJSON lines written
    # Forward mode (``StandInServer(forward_to=...)``): the answer came from the engine.
    forwarded: bool = False
    # When the server noticed that the client closed before the response was complete.
    disconnected_at: float | None = None
    # Lines written after the disconnect was noticed: a correct server keeps this at 0.
    chunks_after_disconnect: int = 0
    closed: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def wait_closed(self, timeout: float | None = 5.0) -> bool:
        """Block until handling of this request ended; False if `timeout` passed first."""
        return self.closed.wait(timeout)

    @property
    def disconnected(self) -> bool:
        return self.disconnected_at is not None

    @property
    def queued(self) -> bool:
        """The request had to wait for a slot of its model."""
        return self.queued_at is not None

    @property
    def queue_wait(self) -> float | None:
        """Seconds the request waited for its slot (0 when it got one at once)."""
        if self.scheduled_at is None:
            return None
        return self.scheduled_at - (
            self.queued_at if self.queued_at is not None else self.scheduled_at
        )
