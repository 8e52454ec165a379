"""The HTTP edge: talks to Ollama with httpx and turns every failure into an OllamaError.

Timeouts: httpx enforces `connect` and `read` (a read timeout is the longest silence,
which also covers model load before the first chunk). The `total` cap is enforced by
the caller, which cancels the stream; cancellation closes the response here, in
`finally`, so the server stops generating on every path.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._config import Timeouts
from ._exceptions import (
    OllamaConnectionError,
    OllamaError,
    OllamaModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
)
from ._ndjson import LineDecoder, parse_line

ERROR_BODY_LIMIT = 64 * 1024
BACKOFF_FIRST = 0.25  # seconds before the first connection retry; doubles each time


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Building the context loads the CA bundle (~20 ms); do it once, not per request.
    return httpx.create_ssl_context()


class OllamaClient:
    """One host, one set of timeouts. Cheap to create: make one per request."""

    def __init__(
        self,
        host: str,
        timeouts: Timeouts,
        *,
        retries: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.timeouts = timeouts
        self.retries = retries
        self._headers = headers or {}
        self.attempts = 0  # connection attempts made by the last request

    def _http(self) -> httpx.AsyncClient:
        t = self.timeouts
        return httpx.AsyncClient(
            base_url=self.host,
            headers=self._headers,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
            verify=_ssl_context(),
        )

    async def stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST and yield each NDJSON object of the answer as it arrives.

        Wrap in `contextlib.aclosing` so that leaving early closes the response at once.
        """
        async with self._http() as http:
            response = await self._send(http, "POST", path, payload)
            try:
                await _raise_for_status(response, self.host, payload)
                decoder = LineDecoder()
                # Ollama never compresses its stream: then the raw bytes are the content,
                # and aiter_raw saves aiter_bytes' generator, decoder and chunker per chunk.
                if "content-encoding" in response.headers:
                    pieces = response.aiter_bytes()
                else:
                    pieces = response.aiter_raw()
                async for data in pieces:
                    for line in decoder.feed(data):
                        yield parse_line(line)
                if tail := decoder.tail():
                    yield parse_line(tail)
            except httpx.HTTPError as exc:
                raise map_http_error(exc, self.host, self.timeouts) from None
            finally:
                await response.aclose()

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """A request whose answer is one JSON document."""
        async with self._http() as http:
            response = await self._send(http, method, path, payload)
            try:
                await _raise_for_status(response, self.host, payload)
                body = await response.aread()
            except httpx.HTTPError as exc:
                raise map_http_error(exc, self.host, self.timeouts) from None
            finally:
                await response.aclose()
        try:
            return json.loads(body)
        except ValueError:
            raise OllamaResponseError(
                f"{self.host}{path} did not answer with JSON", response.status_code
            ) from None

    async def _send(
        self, http: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any] | None
    ) -> httpx.Response:
        """Open the response, retrying only failures to connect: nothing was sent then."""
        request = http.build_request(method, path, json=payload)
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                return await http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if self.attempts > self.retries:
                    raise map_http_error(exc, self.host, self.timeouts, self.attempts) from None
                await asyncio.sleep(BACKOFF_FIRST * 2 ** (self.attempts - 1))
            except httpx.HTTPError as exc:
                raise map_http_error(exc, self.host, self.timeouts) from None


async def _raise_for_status(
    response: httpx.Response, host: str, payload: dict[str, Any] | None
) -> None:
    if response.status_code < 400:
        return
    body = bytearray()
    async for data in response.aiter_bytes():
        body += data
        if len(body) >= ERROR_BODY_LIMIT:
            break
    detail = _error_detail(bytes(body)) or response.reason_phrase or "no detail"
    model = str((payload or {}).get("model") or (payload or {}).get("name") or "")
    if response.status_code == 404 and model:
        raise OllamaModelNotFoundError(
            f"model {model!r} is not on {host} ({detail}); get it with `ollama pull {model}`"
            " (`%ollama models` lists what is there)",
            model,
        )
    raise OllamaResponseError(
        f"{host} answered HTTP {response.status_code}: {detail}", response.status_code
    )


def _error_detail(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", errors="replace").strip()
    if isinstance(value, dict) and "error" in value:
        return str(value["error"])
    return ""


def map_http_error(
    exc: httpx.HTTPError, host: str, timeouts: Timeouts, attempts: int = 1
) -> OllamaError:
    """The contract's error for an httpx failure, worded for a notebook user."""
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if isinstance(exc, httpx.ConnectTimeout):
        return OllamaTimeoutError(
            f"connect timeout: no connection to {host} within {timeouts.connect:g} s{tries};"
            " is the host right and reachable?",
            "connect",
        )
    if isinstance(exc, httpx.TimeoutException):  # read, write or pool: the server went quiet
        return OllamaTimeoutError(
            f"read timeout: {host} sent nothing for {timeouts.read:g} s"
            " (a cold model can take longer to load: raise --read-timeout)",
            "read",
        )
    if isinstance(exc, httpx.ConnectError):
        return OllamaConnectionError(
            f"cannot reach Ollama at {host}{tries} ({_reason(exc)}). Start it with "
            "`ollama serve`, or point --host / $OLLAMA_HOST at your server."
        )
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return OllamaConnectionError(
            f"{host} closed the connection before the answer was complete ({_reason(exc)})"
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return OllamaConnectionError(f"cannot use host {host}: {_reason(exc)}")
    return OllamaConnectionError(f"request to {host} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # httpx says "All connection attempts failed" when every address refused the connection.
    if "Connection refused" in text or "All connection attempts failed" in text:
        return "connection refused"
    if not text:
        return type(exc).__name__
    return text.splitlines()[0][:160]
