"""HTTP/1.1 over asyncio streams, written out by hand.

The stand-in exists to control exactly when bytes go out (headers only with the first
chunk, a line split inside a UTF-8 character, a body cut short), which an HTTP framework
would hide, so it speaks the protocol itself. Only what Ollama's clients use is
supported: request bodies with Content-Length or chunked encoding, keep-alive, and
responses with Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio
import http
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

from ._record import RequestRecord

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 64 * 1024 * 1024  # images arrive base64-encoded in the body
_READ_SIZE: Final = 64 * 1024
SPLIT_PAUSE: Final = 0.02  # long enough that the client reads the two halves separately


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.x request this server understands."""


class ClientGone(Exception):
    """A write failed because the client closed the connection."""


class ResponseEnded(Exception):
    """The response was ended early on purpose (error line, dropped connection)."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    started_at: float

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class Connection:
    """One client connection: buffered reads, request parsing, end-of-stream watching.

    Reads go through our own buffer so that the disconnect watcher can read from the
    socket while a response is being generated without losing bytes that belong to a
    later request: whatever it reads is kept for the next parse.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self._buffer = bytearray()
        self.peer_closed = False

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; False once the client closed its side."""
        if self.peer_closed:
            return False
        try:
            data = await self.reader.read(_READ_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.peer_closed = True
            return False
        self._buffer += data
        return True

    async def wait_peer_closed(self) -> None:
        """Return when the client closes the connection (EOF or reset)."""
        while await self._fill():
            pass

    async def _read_line(self, limit: int) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end != -1:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r\n")
            if len(self._buffer) > limit:
                raise BadRequest("request head too large")
            if not await self._fill():
                return None

    async def _read_exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if not await self._fill():
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_request(self) -> HttpRequest | None:
        """The next request, or None when the client closed the connection first."""
        line = b""
        while not line:  # RFC 9112 asks servers to ignore empty lines before a request
            read = await self._read_line(MAX_HEAD)
            if read is None:
                return None
            line = read
        started_at = time.monotonic()
        try:
            method, target, version = line.decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest(f"malformed request line {line[:80]!r}") from None
        if not version.startswith("HTTP/1."):
            raise BadRequest(f"unsupported protocol {version[:20]!r}")
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            header = await self._read_line(MAX_HEAD)
            if header is None:
                return None
            if not header:
                break
            size += len(header)
            if size > MAX_HEAD:
                raise BadRequest("request head too large")
            name, sep, value = header.decode("latin-1").partition(":")
            if not sep or not name.strip():
                raise BadRequest(f"malformed header line {header[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if headers.get("expect", "").lower() == "100-continue":
            # curl waits for this (up to a second) before sending a large body.
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(headers)
        if body is None:
            return None
        return HttpRequest(method, target, version, headers, body, started_at)

    async def _read_body(self, headers: dict[str, str]) -> bytes | None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked_body()
        length_text = headers.get("content-length", "0")
        try:
            length = int(length_text)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length_text[:20]!r}") from None
        if not 0 <= length <= MAX_BODY:
            raise BadRequest(f"Content-Length {length} out of range")
        return await self._read_exactly(length)

    async def _read_chunked_body(self) -> bytes | None:
        body = bytearray()
        while True:
            size_line = await self._read_line(MAX_HEAD)
            if size_line is None:
                return None
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = await self._read_line(MAX_HEAD)
                    if not trailer:
                        return bytes(body) if trailer is not None else None
            if len(body) + size > MAX_BODY:
                raise BadRequest("request body too large")
            chunk = await self._read_exactly(size + 2)
            if chunk is None:
                return None
            body += chunk[:size]

    def close(self) -> None:
        """Close after flushing what was written: the client sees a clean FIN."""
        self.writer.close()


def _status_line(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n"


def _split_point(data: bytes) -> int:
    """Where to cut a line: inside the multi-byte UTF-8 character nearest its middle."""
    leads = [i for i, byte in enumerate(data) if byte >= 0xC0]  # lead bytes of 2-4 byte chars
    if not leads:
        return max(1, len(data) // 2)
    lead = min(leads, key=lambda i: abs(i - len(data) // 2))
    return lead + 1


class Responder:
    """Writes one response and keeps its :class:`RequestRecord` up to date."""

    def __init__(self, connection: Connection, record: RequestRecord, *, head_only: bool) -> None:
        self._connection = connection
        self._record = record
        self._head_only = head_only  # HEAD: headers as for GET, no body
        self.headers_sent = False
        self.connection_closed = False
        self.stream_type = "application/x-ndjson"  # Server-Sent Events for /v1 (`_openai`)

    def _head(self, status: int, fields: dict[str, str]) -> bytes:
        lines = [_status_line(status)]
        lines += [f"{name}: {value}\r\n" for name, value in fields.items()]
        # Marks every response as coming from a stand-in, even one that reads like a reply.
        lines.append("X-Stand-In: ollama_nb.testing (not a model)\r\n")
        lines.append(f"Date: {formatdate(usegmt=True)}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    async def _write(self, data: bytes) -> None:
        if self._connection.peer_closed or self.connection_closed:
            self._note_gone()
            raise ClientGone
        self._connection.writer.write(data)
        try:
            await self._connection.writer.drain()
        except (ConnectionError, OSError):
            self._note_gone()
            raise ClientGone from None

    def _note_gone(self) -> None:
        if self._record.disconnected_at is None and not self._record.completed:
            self._record.disconnected_at = time.monotonic()

    def _note_headers(self, status: int) -> None:
        self.headers_sent = True
        self._record.status = status
        self._record.first_byte_at = time.monotonic()

    async def send(self, status: int, body: bytes, content_type: str) -> None:
        """A complete response with Content-Length, in a single write."""
        head = self._head(status, {"Content-Type": content_type, "Content-Length": str(len(body))})
        self._note_headers(status)
        await self._write(head if self._head_only else head + body)
        self._record.completed = True

    async def write_line(self, line: bytes, *, split: bool = False) -> None:
        """One NDJSON line as one HTTP chunk; the headers go out with the first one."""
        data = line + b"\n"
        prefix = f"{len(data):x}\r\n".encode()
        if not self.headers_sent:
            prefix = (
                self._head(200, {"Content-Type": self.stream_type, "Transfer-Encoding": "chunked"})
                + prefix
            )
            self._note_headers(200)
        if self._record.disconnected_at is not None:
            self._record.chunks_after_disconnect += 1
        if split:
            cut = _split_point(data)
            await self._write(prefix + data[:cut])
            await asyncio.sleep(SPLIT_PAUSE)
            await self._write(data[cut:] + b"\r\n")
        else:
            await self._write(prefix + data + b"\r\n")
        self._record.chunks_sent += 1

    async def start_chunked(self) -> None:
        """Headers of an NDJSON response with no chunk yet (only for a body cut at once)."""
        if not self.headers_sent:
            head = self._head(
                200, {"Content-Type": self.stream_type, "Transfer-Encoding": "chunked"}
            )
            self._note_headers(200)
            await self._write(head)

    async def end_chunked(self) -> None:
        """The terminating zero-size chunk: the response is complete."""
        await self.start_chunked()
        await self._write(b"0\r\n\r\n")
        self._record.completed = True

    def drop(self) -> None:
        """Close the connection now, leaving the response unfinished."""
        self.connection_closed = True
        self._connection.close()
