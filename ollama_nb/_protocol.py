"""Which API a server speaks, behind one interface (as httpx's transports are).

The rest of the package describes every request in Ollama's terms — a path such as
`/api/generate` and its JSON body — and reads Ollama-shaped chunks back. A `Protocol`
turns that description into what its server takes (path, body, Accept) and the
server's answer back into the same chunks, so the magic, the views and batches never
know which one runs. `OllamaProtocol` is the identity; `_openai.OpenAIProtocol` speaks
OpenAI's `/v1` API (it meets these interfaces by shape: it imports nothing from here).
"""

from __future__ import annotations

import urllib.parse
from typing import Any
from typing import Protocol as TypingProtocol

from ._exceptions import OllamaError
from ._ndjson import LineDecoder, parse_line
from ._openai import OPENAI

APIS = ("auto", "ollama", "openai")


class ChunkDecoder(TypingProtocol):
    """Bytes of a streamed answer in, Ollama-shaped chunks (dicts) out."""

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def end(self) -> list[dict[str, Any]]: ...


class Protocol(TypingProtocol):
    name: str  # "ollama" or "openai": the `--api` value
    stream_accept: str  # the Accept header of a streamed request

    def outgoing(self, path: str, payload: dict[str, Any] | None) -> tuple[str, Any]:
        """(the server's path, its JSON body) for an Ollama-described request; an
        OllamaError, before anything is sent, where the server has no counterpart."""
        ...

    def incoming(self, path: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A one-document answer, shaped as Ollama's answer to `path`."""
        ...

    def decoder(self, path: str) -> ChunkDecoder: ...

    def status_error(
        self, status: int, body: bytes, model: str, host: str, url: str, redirected: str
    ) -> OllamaError | None:
        """The error for an HTTP error status, or None for the client's own wording."""
        ...


class NdjsonDecoder:
    """Ollama's streams: one JSON object per line."""

    def __init__(self) -> None:
        self._lines = LineDecoder()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [parse_line(line) for line in self._lines.feed(data)]

    def end(self) -> list[dict[str, Any]]:
        tail = self._lines.tail()
        return [parse_line(tail)] if tail else []


class OllamaProtocol:
    """Ollama's own API: requests go as described, answers come as they are."""

    name = "ollama"
    stream_accept = "application/x-ndjson"

    def outgoing(self, path: str, payload: dict[str, Any] | None) -> tuple[str, Any]:
        return path, payload

    def incoming(self, path: str, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def decoder(self, path: str) -> ChunkDecoder:
        return NdjsonDecoder()

    def status_error(
        self, status: int, body: bytes, model: str, host: str, url: str, redirected: str
    ) -> OllamaError | None:
        return None


OLLAMA = OllamaProtocol()


def speaks_openai(api: str, host: str) -> bool:
    """`--api`: `auto` speaks OpenAI's protocol when the host's path ends in `/v1`."""
    if api not in APIS:
        raise ValueError(f"api takes {', '.join(APIS)}, not {api!r}")
    if api == "auto":
        return urllib.parse.urlsplit(host).path.rstrip("/").endswith("/v1")
    return api == "openai"


def protocol_for(api: str | None, host: str) -> Protocol:
    if speaks_openai(api or "auto", host):
        return OPENAI
    return OLLAMA
