"""Servers the clients under test talk to, each in its own process.

- `stand_in()`: ``python -m ollama_nb.testing`` at full speed (token_interval 0).
- `replay()`: writes back one recorded stand-in response as fast as the socket takes
  it, so that the client, not the server, is what limits throughput.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START_SECONDS = 15.0
HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def _process(argv: list[str]) -> Iterator[str]:
    """Run `argv` until the block ends; yield the URL it prints on its first line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_SECONDS)
        line = proc.stdout.readline() if ready else ""
        if "http://" not in line:
            raise RuntimeError(f"{argv[1:]} did not start within {START_SECONDS} s: {line!r}")
        yield line[line.index("http://") :].split()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stand_in(tokens: int) -> contextlib.AbstractContextManager[str]:
    """The stand-in Ollama in a separate process, answering `tokens` tokens at full speed."""
    return _process(
        [sys.executable, "-m", "ollama_nb.testing", "--port", "0", "--token-interval", "0",
         "--tokens", str(tokens)]
    )  # fmt: skip


def replay(recording: Path) -> contextlib.AbstractContextManager[str]:
    """A server process that answers every request with the bytes in `recording`."""
    return _process([sys.executable, str(HERE / "_replay.py"), str(recording)])


def record_response(url: str, payload: dict[str, Any], timeout: float = 60.0) -> bytes:
    """The complete raw HTTP response to POST /api/generate (status line to last chunk)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(payload).encode()
    head = (
        f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    data = bytearray()
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head + body)
        while piece := sock.recv(1 << 16):
            data += piece
            if time.monotonic() > deadline:
                raise TimeoutError(f"recording the response took over {timeout} s")
    if not data.endswith(b"\r\n0\r\n\r\n"):
        raise RuntimeError("the recorded response is incomplete")
    return bytes(data)


def drain_seconds(url: str, payload: dict[str, Any]) -> float:
    """Wall time to receive a whole response on a bare socket: the server's own floor."""
    started = time.perf_counter()
    record_response(url, payload)
    return time.perf_counter() - started
