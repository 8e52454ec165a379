"""A TCP port where connecting hangs: for testing connect timeouts.

A closed port refuses at once, and a firewalled address cannot be made up on a test
machine. Instead: listen with the smallest backlog, never accept, and fill the accept
queue with our own connections. Linux then drops further SYNs without answering, so a
client's connect neither succeeds nor fails until its own timeout.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections.abc import Iterator
from typing import Final

_MAX_FILLERS: Final = 64
# A loopback connect completes in microseconds when the queue has room; one that has
# not completed after this long has had its SYN dropped.
_SETTLE_SECONDS: Final = 0.2


@contextlib.contextmanager
def unresponsive_listener(host: str = "127.0.0.1") -> Iterator[str]:
    """Yield ``http://HOST:PORT`` where a TCP connect hangs (never accepted)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(_MAX_FILLERS):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            code = filler.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, f"filler connection failed: {errno.errorcode.get(code)}")
            _, writable, _ = select.select([], [filler], [], _SETTLE_SECONDS)
            if not writable:
                break  # this connect hangs: the accept queue is full
            error = filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, "filler connection failed")
        else:
            raise RuntimeError("could not fill the accept queue; connects would not hang")
        yield f"http://{address[0]}:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
