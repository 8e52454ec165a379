"""A raw-socket HTTP/1.1 server on loopback whose answers a test writes byte by byte.

For the HTTP edges the stand-in is too well-behaved to show: redirects, a router's
plain-text 404, wrong-typed chunks, trickling or huge bodies, an HTTP proxy. One request
per connection (`Connection: close`); every request is recorded before it is answered.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RawRequest:
    method: str
    target: str  # as sent: a path, or an absolute URI when sent to a proxy
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[RawRequest, socket.socket], None]


def response(status: str, body: bytes = b"", content_type: str = "application/json",
             extra: str = "") -> bytes:  # fmt: skip
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


def ndjson_response(lines: list[str]) -> bytes:
    """A 200 NDJSON answer, chunked, one line per chunk."""
    out = [b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]  # fmt: skip
    for line in lines:
        data = (line + "\n").encode()
        out.append(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class RawServer:
    """`with RawServer(handler) as server:` serves on `server.url` until the block ends."""

    def __init__(
        self, handler: Handler, tls: ssl.SSLContext | None = None, socks5: bool = False
    ) -> None:
        self.handler = handler
        self.requests: list[RawRequest] = []
        self.socks5 = socks5  # speak SOCKS5 first, then serve HTTP for the target itself
        self.socks_targets: list[str] = []  # "host:port" asked for by each SOCKS CONNECT
        self.connections = 0  # TCP connections accepted (TLS handshakes attempted)
        self._tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(10)
            try:
                if self.socks5:
                    self.socks_targets.append(socks5_accept(conn))
                if self._tls is not None:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                request = read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                self.handler(request, conn)
            except (OSError, ssl.SSLError):
                return  # the client hung up, or refused our certificate


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise OSError("closed during the SOCKS handshake")
        data += part
    return data


def socks5_accept(conn: socket.socket) -> str:
    """The server side of a SOCKS5 CONNECT without authentication (RFC 1928); returns the
    target it asked for. Nothing is forwarded: the caller then answers as that target."""
    _, count = _recv_exactly(conn, 2)
    _recv_exactly(conn, count)
    conn.sendall(b"\x05\x00")
    _, _, _, kind = _recv_exactly(conn, 4)
    if kind == 3:  # a domain name, which the proxy (never this machine) would resolve
        name = _recv_exactly(conn, _recv_exactly(conn, 1)[0]).decode()
    else:
        raw = _recv_exactly(conn, 4 if kind == 1 else 16)
        name = socket.inet_ntop(socket.AF_INET if kind == 1 else socket.AF_INET6, raw)
    port = int.from_bytes(_recv_exactly(conn, 2), "big")
    conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
    return f"{name}:{port}"


def read_request(conn: socket.socket) -> RawRequest | None:
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return None
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        part = conn.recv(65536)
        if not part:
            break
        body += part
    return RawRequest(method, target, headers, body)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
