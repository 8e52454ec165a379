"""Server-Sent Events framing: bytes as they come off the socket in, each event's data out.

The guarantees of the NDJSON framing (`_ndjson`): a line may be split across reads and
a UTF-8 character across two reads, so bytes are decoded only once their event is
complete; a line, or an event's data, longer than the cap is an error, not a memory
blow-up. An event ends at a blank line; its `data:` lines are joined with newlines.
Comments (`:`) and the `event:`, `id:` and `retry:` fields carry nothing an answer
needs. A line that is none of these is not Server-Sent Events: one readable error
rather than a silent wait for an end that never comes.
"""

from __future__ import annotations

from ._exceptions import OllamaResponseError
from ._ndjson import MAX_LINE_BYTES, LineSplitter, preview

_FIELDS = frozenset((b"event", b"id", b"retry"))


class EventDecoder:
    """Split a byte stream into the data of complete events."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = _EventLines(max_line_bytes)
        self._data: list[bytes] = []  # the data lines of the event in progress
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        # One call per HTTP chunk, i.e. per token: the usual chunk is one whole
        # `data: {...}` event, taken apart without going line by line.
        if (
            not self._data
            and data.startswith(b"data: ")
            and data.count(b"\n") == 2
            and not self._lines.pending
            and len(data) <= self._lines.limit
        ):
            if data.endswith(b"\n\n"):
                return [data[6:-2]]
            if data.endswith(b"\r\n\r\n"):  # sse-starlette (llama-cpp-python, vLLM)
                return [data[6:-4]]
        events: list[bytes] = []
        for line in self._lines.split(data):
            self._line(line, events)
        return events

    def tail(self) -> list[bytes]:
        """What is left once the stream ended: a last line, a last event without its
        blank line."""
        events: list[bytes] = []
        rest = self._lines.rest()
        if rest.strip():
            self._line(rest, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data, self._size = [], 0
            return
        if line.startswith(b":"):  # a comment (keep-alive pings)
            return
        name, _, value = line.partition(b":")
        if name == b"data":
            if value[:1] == b" ":
                value = value[1:]
            self._data.append(value)
            self._size += len(value)
            self._lines.check(self._size)
            return
        if name in _FIELDS:
            return
        raise OllamaResponseError(
            f"the server sent a line that is not a Server-Sent Event: {preview(line)}"
            " (is --host an OpenAI-compatible API, e.g. http://host:port/v1?)"
        )


class _EventLines(LineSplitter):
    too_long = "an event longer than {mib} MiB"

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    @property
    def limit(self) -> int:
        return self._max
