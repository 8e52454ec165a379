"""Where a request goes and how long it may take: host parsing, timeouts, credentials.

Pure functions only; the magic decides which source (cell option, `%config`,
environment, default) each value comes from.
"""

from __future__ import annotations

import ipaddress
import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_RETRIES = 2
API_KEY_ENV = "OLLAMA_API_KEY"


def parse_host(value: str | None) -> str:
    """Normalise a host the way the official client reads `OLLAMA_HOST`.

    `host`, `host:port`, `http(s)://host[:port][/path]`; the scheme defaults to http,
    the port to 11434 (80/443 when the scheme is given without a port).

    >>> parse_host("example.com")
    'http://example.com:11434'
    >>> parse_host("https://example.com/ollama/")
    'https://example.com:443/ollama'
    """
    text = (value or "").strip()
    port = DEFAULT_PORT
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    else:
        raise ValueError(f"unsupported scheme {scheme!r} in host {value!r} (use http or https)")
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
        host = split.hostname or "127.0.0.1"
        port = split.port or port
    except ValueError as exc:
        raise ValueError(f"cannot read host {value!r}: {exc}") from None
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            host = f"[{host}]"
    except ValueError:
        pass
    path = split.path.strip("/")
    url = f"{scheme}://{host}:{port}/{path}" if path else f"{scheme}://{host}:{port}"
    try:
        httpx.Request("GET", f"{url}/api/version")  # what the client will build: IPv4, IDNA
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"cannot use host {value!r}: {exc}") from None
    return url


def check_seconds(name: str, value: float | None, *, allow_none: bool = False) -> float | None:
    """A timeout must be a positive, finite number of seconds."""
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a number of seconds")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return number


def check_retries(value: int) -> int:
    if isinstance(value, bool) or int(value) != value or not 0 <= value <= 20:
        raise ValueError(f"retries must be a whole number from 0 to 20, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Timeouts:
    """connect: to establish the TCP connection (per attempt).
    read: the longest silence, before the first chunk (model load) or between chunks.
    total: a wall-clock cap on the whole request, or None.
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    total: float | None = None


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`$OLLAMA_API_KEY` becomes a bearer token; it is never shown anywhere else."""
    env = os.environ if environ is None else environ
    key = env.get(API_KEY_ENV, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}
