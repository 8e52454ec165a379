"""The HTTP edge: talks to Ollama with httpx and turns every failure into an OllamaError.

Timeouts: httpx enforces `connect` and `read` (a read timeout is the longest silence,
which also covers model load before the first chunk). For a stream, the `total` cap is
enforced by the caller, which cancels the stream; cancellation closes the response here,
in `finally`, so the server stops generating on every path. `call` (one JSON document:
the line commands) enforces `total` itself, and a size limit on the body.

Where requests go: a loopback host (localhost, 127.0.0.0/8, ::1) is always reached
directly, never through a proxy from the environment (a proxy would receive the prompt
and the key, or, dead, make a running Ollama look down); other hosts follow
`HTTP(S)_PROXY` / `ALL_PROXY` / `NO_PROXY` as httpx reads them. Redirects are followed
as the official client (httpx) follows them: the same method and body for 307/308.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import platform
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._config import Timeouts, is_loopback, redact_url, split_credentials
from ._exceptions import (
    OllamaConnectionError,
    OllamaError,
    OllamaModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
)
from ._protocol import OLLAMA, Protocol
from ._wake import loop_stays_awake

ERROR_BODY_LIMIT = 64 * 1024
CALL_BODY_LIMIT = 16 * 1024 * 1024  # a /api/tags of thousands of models is well under 1 MiB
BACKOFF_FIRST = 0.25  # seconds before the first connection retry; doubles each time...
BACKOFF_CAP = 8.0  # ...up to this: `--retries 20` against a refused port waits ~2.5 min
MAX_REDIRECTS = 10
LOOPBACK_MOUNTS = ("all://localhost", "all://127.0.0.1", "all://[::1]")


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # Building the context loads the CA bundle (~20 ms): once per SSL_CERT_FILE/DIR value.
    # httpx reads those two variables itself; they are the key so that a change is seen.
    return httpx.create_ssl_context()


def ssl_context() -> ssl.SSLContext:
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("ollama-nb")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        ours = "unknown"
    system = f"{sys.platform} {platform.machine()}".strip()
    return f"ollama-nb/{ours} (python/{platform.python_version()}; {system})"


class OllamaClient:
    """One host, one set of timeouts. Cheap to create: make one per request.

    `host` may carry `user:password@` (sent as basic auth); `self.host` is the host as
    shown to the user, with the password masked.
    """

    def __init__(
        self,
        host: str,
        timeouts: Timeouts,
        *,
        retries: int = 0,
        headers: dict[str, str] | None = None,
        body_limit: int = CALL_BODY_LIMIT,
        protocol: Protocol = OLLAMA,
    ) -> None:
        self.host = redact_url(host)
        self._base, credentials = split_credentials(host)
        self._auth = httpx.BasicAuth(*credentials) if credentials else None
        self.timeouts = timeouts
        self.retries = retries
        self.body_limit = body_limit
        self.protocol = protocol  # which API the server speaks (`_protocol`)
        self._headers = {"User-Agent": user_agent(), **(headers or {})}
        _check_headers(self._headers)
        self.attempts = 0  # connection attempts made by the last request
        self.lines = 0  # NDJSON lines received by the last stream
        self.proxy: str | None = None  # the environment's proxy the last request went through

    def _http(self) -> httpx.AsyncClient:
        t = self.timeouts
        verify = ssl_context()
        url = httpx.URL(self._base)
        direct = is_loopback(url.host)
        proxies = {} if direct else urllib.request.getproxies()
        proxied = bool(proxies)
        bypass = not proxies or urllib.request.proxy_bypass_environment(url.host, proxies)
        self.proxy = None if bypass else proxies.get(url.scheme) or proxies.get("all")
        try:
            return httpx.AsyncClient(
                base_url=self._base,
                auth=self._auth,
                headers=self._headers,
                timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
                verify=verify,
                # Loopback: no proxy from the environment. Elsewhere httpx reads them,
                # and a redirect to loopback still goes direct.
                trust_env=not direct,
                mounts=(
                    {p: httpx.AsyncHTTPTransport(verify=verify) for p in LOOPBACK_MOUNTS}
                    if proxied
                    else None
                ),
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
            )
        except (ImportError, ValueError) as exc:
            raise _proxy_error(self.host, exc) from None

    async def stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST and yield each chunk of the answer (an Ollama-shaped dict) as it arrives.

        Wrap in `contextlib.aclosing` so that leaving early closes the response at once.
        """
        self.lines = 0
        protocol = self.protocol
        async with self._http() as http:
            where, body = protocol.outgoing(path, payload)
            response = await self._send(http, "POST", where, body, protocol.stream_accept)
            try:
                await self._raise_for_status(response, payload)
                decoder = protocol.decoder(path)
                # Ollama never compresses its stream: then the raw bytes are the content,
                # and aiter_raw saves aiter_bytes' generator, decoder and chunker per chunk.
                if "content-encoding" in response.headers:
                    pieces = response.aiter_bytes()
                else:
                    pieces = response.aiter_raw()
                async for data in pieces:
                    for chunk in decoder.feed(data):
                        self.lines += 1
                        yield chunk
                for chunk in decoder.end():
                    self.lines += 1
                    yield chunk
            except httpx.HTTPError as exc:
                raise self._error(exc) from None
            finally:
                await response.aclose()

    def url_of(self, path: str) -> str:
        """Where the server answers the Ollama-described `path` (for messages)."""
        return self.host + self.protocol.outgoing(path, None)[0]

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """A request whose answer is one JSON object, within the total timeout (if any)
        and `body_limit` bytes. A kernel interrupt ends it at once, however silent the
        server (see `_wake`)."""
        total = self.timeouts.total
        where, sent = self.protocol.outgoing(path, payload)
        try:
            async with loop_stays_awake():
                call = self._call(method, path, where, sent, payload)
                return await asyncio.wait_for(call, total)
        except asyncio.TimeoutError:
            raise OllamaTimeoutError(
                f"total timeout: {self.host}{where} did not answer within {total:g} s"
                " (raise --timeout / OllamaMagics.timeout)",
                "total",
            ) from None

    async def _call(
        self, method: str, path: str, where: str, sent: Any, payload: dict[str, Any] | None
    ) -> Any:
        """`path` as described (Ollama's), `where` and `sent` as the server takes them."""
        async with self._http() as http:
            response = await self._send(http, method, where, sent, "application/json")
            try:
                await self._raise_for_status(response, payload)
                body = bytearray()
                async for data in response.aiter_bytes():
                    body += data
                    if len(body) > self.body_limit:
                        raise OllamaResponseError(
                            f"{self.host}{where} sent more than {self.body_limit // 2**20} MiB;"
                            " this is not an Ollama answer (check --host)",
                            response.status_code,
                        )
            except httpx.HTTPError as exc:
                raise self._error(exc) from None
            finally:
                await response.aclose()
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise OllamaResponseError(
                f"{self.host}{where} did not answer with a JSON object", response.status_code
            )
        return self.protocol.incoming(path, value)

    async def _raise_for_status(
        self, response: httpx.Response, payload: dict[str, Any] | None
    ) -> None:
        try:
            await _raise_for_status(response, self.host, payload, self.protocol)
        except OllamaError as error:
            raise self._redacted(error) from None

    async def _send(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        accept: str,
    ) -> httpx.Response:
        """Open the response, retrying only failures to connect: nothing was sent then."""
        request = http.build_request(method, path, json=payload, headers={"Accept": accept})
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                return await http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if self.attempts > self.retries or _certificate_problem(exc):
                    raise self._error(exc) from None
                await asyncio.sleep(backoff(self.attempts))
            except httpx.HTTPError as exc:
                raise self._error(exc) from None

    def _error(self, exc: httpx.HTTPError) -> OllamaError:
        proxied = self.proxy and isinstance(exc, httpx.ConnectError)
        if proxied and not _certificate_problem(exc):
            return OllamaConnectionError(
                f"cannot reach {self.host} through the proxy {redact_url(self.proxy or '')}"
                f" from the environment ({_reason(exc)}); check $HTTP_PROXY, $HTTPS_PROXY and"
                " $ALL_PROXY, or list the host in $NO_PROXY"
            )
        error = map_http_error(exc, self.host, self.timeouts, self.attempts, self.lines)
        refused = isinstance(exc, httpx.ConnectError) and not _certificate_problem(exc)
        if self.protocol is not OLLAMA and refused:  # the Ollama advice does not apply
            tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
            error = OllamaConnectionError(
                f"cannot reach the server at {self.host}{tries} ({_reason(exc)}); is it"
                " running, and are --host and its port right?"
            )
        return self._redacted(error)

    def _redacted(self, error: OllamaError) -> OllamaError:
        """Whatever httpx, h11 or the server said, no header value (the key) reaches the
        user."""
        secrets = list(self._headers.values())
        secrets += [v.partition(" ")[2] for v in secrets if v.startswith("Bearer ")]
        for value in sorted(secrets, key=len, reverse=True):
            if len(value) > 8 and value in error.message:
                error.message = error.message.replace(value, "***")
                error.args = (error.message,)
        return error


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))


def _check_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if any(not " " <= c < "\x7f" for c in value):
            raise OllamaError(
                f"the {name} header holds a line break, a control or a non-ASCII character"
                " (not shown); nothing was sent"
            )


def _proxy_error(host: str, exc: Exception) -> OllamaConnectionError:
    proxies = {f"${k.upper()}_PROXY": v for k, v in urllib.request.getproxies().items()}
    socks = [k for k, v in proxies.items() if v.lower().startswith("socks")]
    if isinstance(exc, ImportError) and socks:
        where = ", ".join(f"{k} ({redact_url(proxies[k])})" for k in socks)
        return OllamaConnectionError(
            f"to reach {host}, the proxy in {where} is a SOCKS proxy, which needs the socksio"
            " package: pip install socksio (or list the host in $NO_PROXY)"
        )
    where = ", ".join(f"{k}={redact_url(v)}" for k, v in proxies.items() if k != "$NO_PROXY")
    return OllamaConnectionError(
        f"cannot use the proxy from the environment to reach {host} ({where}): only http,"
        " https, socks5 and socks5h proxies are supported"
    )


async def _raise_for_status(
    response: httpx.Response,
    host: str,
    payload: dict[str, Any] | None,
    protocol: Protocol = OLLAMA,
) -> None:
    if response.status_code < 400:
        return
    body = bytearray()
    async for data in response.aiter_bytes():
        body += data
        if len(body) >= ERROR_BODY_LIMIT:
            break
    model = str((payload or {}).get("model") or (payload or {}).get("name") or "")
    url = redact_url(str(response.request.url))
    redirected = ""
    if response.history:  # 301/302 turn a POST into a GET, as in the official client
        redirected = f" after a redirect to {response.request.method} {url}"
    error = protocol.status_error(response.status_code, bytes(body), model, host, url, redirected)
    if error is not None:
        raise error
    detail, from_ollama = _error_detail(bytes(body))
    detail = detail or response.reason_phrase or "no detail"
    # Ollama words it "model 'x' not found" (older: `model "x" not found, try pulling it
    # first`); a router's or a reverse proxy's 404 is another story.
    lowered = detail.lower()
    from_ollama = from_ollama and "model" in lowered and "not found" in lowered
    if response.status_code == 404 and model and from_ollama:
        # Ollama's own wording says again what the message says: keep only other details.
        said = f" ({detail})" if model not in detail else ""
        raise OllamaModelNotFoundError(
            f"model {model!r} is not on {host}{said}; get it with: ollama pull {model}"
            " (%ollama models lists what is there)",
            model,
        )
    if response.status_code == 404:
        raise OllamaResponseError(
            f"no Ollama API answers at {url} (HTTP 404{redirected}: {detail}); check the host"
            " and any path in --host / $OLLAMA_HOST",
            404,
        )
    raise OllamaResponseError(
        f"{host} answered HTTP {response.status_code}{redirected}: {detail}",
        response.status_code,
    )


def _error_detail(body: bytes) -> tuple[str, bool]:
    """The error text of a body, and whether it is Ollama's JSON `{"error": "..."}`."""
    try:
        value = json.loads(body)
    except ValueError:
        text = body[:200].decode("utf-8", errors="replace").strip()
        return " ".join(text.split()), False
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"], True
    return "", False


def _certificate_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(10):  # the httpcore/ssl chain is a few links long
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def map_http_error(
    exc: httpx.HTTPError, host: str, timeouts: Timeouts, attempts: int = 1, lines: int = 0
) -> OllamaError:
    """The contract's error for an httpx failure, worded for a notebook user.

    `lines`: NDJSON lines received before it, which tells a model still loading (or a
    request queued on the server) from a server gone quiet mid-answer.
    """
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if isinstance(exc, httpx.ConnectTimeout):
        return OllamaTimeoutError(
            f"connect timeout: no connection to {host} within {timeouts.connect:g} s{tries};"
            " is the host right and reachable?",
            "connect",
        )
    if isinstance(exc, httpx.TimeoutException):  # read, write or pool: the server went quiet
        if lines:
            return OllamaTimeoutError(
                f"read timeout: {host} went quiet for {timeouts.read:g} s after"
                f" {lines} chunk{'' if lines == 1 else 's'} of the answer (the server stalled"
                " mid-answer; the text so far is kept)",
                "read",
            )
        return OllamaTimeoutError(
            f"read timeout: {host} sent nothing for {timeouts.read:g} s: the model may still"
            " be loading, or the request is queued behind others on the server"
            " (raise --read-timeout)",
            "read",
        )
    if certificate := _certificate_problem(exc):
        return OllamaConnectionError(
            f"the TLS certificate of {host} is not trusted ({certificate.verify_message}):"
            " a certificate problem, not retried. If the server uses your own CA, set"
            " $SSL_CERT_FILE to that CA's PEM file (or $SSL_CERT_DIR to its folder)"
            " in the kernel's environment"
        )
    if isinstance(exc, httpx.ConnectError):
        after = f", {attempts} attempts" if attempts > 1 else ""
        return OllamaConnectionError(
            f"cannot reach Ollama at {host} ({_reason(exc)}{after}). Start it with:"
            " ollama serve, or point --host / $OLLAMA_HOST at your server."
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return OllamaResponseError(
            f"{host} redirected more than {MAX_REDIRECTS} times; check --host", -1
        )
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return OllamaConnectionError(
            f"{host} closed the connection before the answer was complete ({_reason(exc)})"
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return OllamaConnectionError(f"cannot use host {host}: {redact_url(_reason(exc))}")
    return OllamaConnectionError(f"request to {host} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # httpx says "All connection attempts failed" when every address refused the connection.
    if "Connection refused" in text or "All connection attempts failed" in text:
        return "connection refused"
    if not text:
        return type(exc).__name__
    return text.splitlines()[0][:160]
