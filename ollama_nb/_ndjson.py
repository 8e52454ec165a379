"""NDJSON framing: bytes as they come off the socket in, one JSON object per line out.

A line may be split across reads and a UTF-8 character across two reads, so bytes are
only decoded once their line is complete.
"""

from __future__ import annotations

import json
from typing import Any

from ._exceptions import OllamaResponseError

MAX_LINE_BYTES = 16 * 1024 * 1024


class LineDecoder:
    """Split a byte stream into complete lines, holding back the unfinished tail."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already known to hold no newline
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", max(start, self._scanned))) != -1:
            lines.append(bytes(self._buffer[start:end]))
            start = end + 1
            self._scanned = start
        if start:
            del self._buffer[:start]
        self._scanned = len(self._buffer)
        if self._scanned > self._max:
            raise OllamaResponseError(
                f"the server sent a line longer than {self._max // 2**20} MiB without a newline"
            )
        return [line for line in lines if line.strip()]

    def tail(self) -> bytes:
        """What is left once the stream ended: a last line without its newline."""
        rest, self._buffer, self._scanned = bytes(self._buffer), bytearray(), 0
        return rest if rest.strip() else b""


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON line as a dict; an `{"error": …}` line or bad data raises."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise OllamaResponseError(
            f"the server sent data that is not NDJSON: {_preview(line)}"
        ) from None
    if not isinstance(value, dict):
        raise OllamaResponseError(f"the server sent a line that is not an object: {_preview(line)}")
    if "error" in value:
        raise OllamaResponseError(f"the server reported an error mid-stream: {value['error']}")
    return value


def _preview(line: bytes, limit: int = 80) -> str:
    text = line.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")
