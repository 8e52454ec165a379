"""NDJSON framing: bytes as they come off the socket in, one JSON object per line out.

A line may be split across reads and a UTF-8 character across two reads, so bytes are
only decoded once their line is complete.
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any

from ._exceptions import OllamaResponseError

MAX_LINE_BYTES = 16 * 1024 * 1024
# /api/generate's final chunk carries "context": one token id per token of the whole
# exchange (deprecated by Ollama, never sent back here). Parsed, a 300k-token answer's
# context is ~10 MB of int objects for a moment, and the allocator keeps much of it
# afterwards; it is cut out of the line unparsed. Only a top-level key can match: inside
# a JSON string the quotes are escaped.
CONTEXT_MIN_LINE = 4096  # below this, parsing it costs nothing worth a search
_CONTEXT = re.compile(rb',\s*"context"\s*:\s*\[[\d,\s]*\]|"context"\s*:\s*\[[\d,\s]*\]\s*,?')
# json's C scanner, called directly: `json.loads` adds three Python calls and two regex
# matches around it, a quarter of the time of a ~100-byte line.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())


def _loads(line: bytes) -> Any:
    """`json.loads(line)` for one line (UTF-8), faster for the usual whole-object line."""
    text = line.decode("utf-8")
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: json.loads decides
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)  # trailing data: raises as json.loads does
    return value


class LineDecoder:
    """Split a byte stream into complete lines, holding back the unfinished tail."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()  # the unfinished last line
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[bytes]:
        # One call per HTTP chunk, i.e. per token: split in C, and copy the held-back
        # tail only when there is one (rarely: Ollama writes whole lines).
        if not self._buffer and data.endswith(b"\n"):  # whole lines: the usual case
            if data.count(b"\n") == 1:
                return [] if data.isspace() else [data[:-1]]
            return [line for line in data.split(b"\n") if line and not line.isspace()]
        if b"\n" not in data:
            self._buffer += data
            self._check_length()
            return []
        lines = data.split(b"\n")
        if self._buffer:
            lines[0] = bytes(self._buffer) + lines[0]
            self._buffer.clear()
        self._buffer += lines.pop()
        self._check_length()
        return [line for line in lines if line.strip()]

    def _check_length(self) -> None:
        if len(self._buffer) > self._max:
            raise OllamaResponseError(
                f"the server sent a line longer than {self._max // 2**20} MiB without a newline"
            )

    def tail(self) -> bytes:
        """What is left once the stream ended: a last line without its newline."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest if rest.strip() else b""


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON line as a dict, without a "context" array; an `{"error": …}` line or bad
    data raises."""
    if len(line) > CONTEXT_MIN_LINE and b'"context"' in line:
        line = _CONTEXT.sub(b"", line, count=1)
    try:
        value = _loads(line)
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
