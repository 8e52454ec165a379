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


def loads(line: bytes, errors: str = "strict") -> Any:
    """`json.loads(line)` for one line (UTF-8), faster for the usual whole-object line.
    `errors`: for bytes that are not UTF-8 ("surrogatepass" reads lone surrogates back as
    json.loads of bytes does)."""
    text = line.decode("utf-8", errors)
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: json.loads decides
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)  # trailing data: raises as json.loads does
    return value


class LineSplitter:
    """Split a byte stream into complete lines (blank ones too), holding back the
    unfinished tail; a tail longer than the cap is an error, not a memory blow-up. The
    framing shared by NDJSON (here) and Server-Sent Events (`_sse`)."""

    too_long = "a line longer than {mib} MiB without a newline"

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()  # the unfinished last line
        self._max = max_line_bytes

    def split(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._buffer += data
            self.check(len(self._buffer))
            return []
        lines = data.split(b"\n")
        if self._buffer:
            lines[0] = bytes(self._buffer) + lines[0]
            self._buffer.clear()
        self._buffer += lines.pop()
        self.check(len(self._buffer))
        return lines

    def rest(self) -> bytes:
        """The unfinished last line, taken out."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest

    def check(self, size: int) -> None:
        if size > self._max:
            message = self.too_long.format(mib=self._max // 2**20)
            raise OllamaResponseError(f"the server sent {message}")


class LineDecoder(LineSplitter):
    """The non-blank lines of an NDJSON stream."""

    def feed(self, data: bytes) -> list[bytes]:
        # One call per HTTP chunk, i.e. per token: split in C, and copy the held-back
        # tail only when there is one (rarely: Ollama writes whole lines).
        if not self._buffer and data.endswith(b"\n"):  # whole lines: the usual case
            if data.count(b"\n") == 1:
                return [] if data.isspace() else [data[:-1]]
            return [line for line in data.split(b"\n") if line and not line.isspace()]
        return [line for line in self.split(data) if line.strip()]

    def tail(self) -> bytes:
        """What is left once the stream ended: a last line without its newline."""
        rest = self.rest()
        return rest if rest.strip() else b""


def load_object(data: bytes, not_json: str, unit: str) -> dict[str, Any]:
    """One JSON object (a streamed line or event); anything else is one readable error:
    `the server sent {not_json}: …` or `the server sent {unit} that is not an object: …`."""
    try:
        value = loads(data)
    except (UnicodeDecodeError, ValueError):
        raise OllamaResponseError(f"the server sent {not_json}: {preview(data)}") from None
    if not isinstance(value, dict):
        raise OllamaResponseError(f"the server sent {unit} that is not an object: {preview(data)}")
    return value


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON line as a dict, without a "context" array; an `{"error": …}` line or bad
    data raises."""
    if len(line) > CONTEXT_MIN_LINE and b'"context"' in line:
        line = _CONTEXT.sub(b"", line, count=1)
    value = load_object(line, "data that is not NDJSON", "a line")
    if "error" in value:
        raise OllamaResponseError(f"the server reported an error mid-stream: {value['error']}")
    return value


def preview(line: bytes, limit: int = 80) -> str:
    """A line as an error message quotes it: decoded, cut."""
    text = line.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")
