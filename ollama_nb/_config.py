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

from ._exceptions import OllamaError

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_RETRIES = 2
API_KEY_ENV = "OLLAMA_API_KEY"
# An OpenAI-compatible server: its own variable first, then Ollama's.
OPENAI_KEY_ENVS = ("OPENAI_API_KEY", API_KEY_ENV)


def parse_host(value: str | None) -> str:
    """Normalise a host the way Ollama reads `OLLAMA_HOST` (envconfig.Host).

    Surrounding quotes and spaces are trimmed; the scheme defaults to http; a bare host
    gets port 11434, `http://host` 80 and `https://host` 443; `ollama.com` alone means
    `https://ollama.com:443`; an IPv6 address may come bare (`::1`) or bracketed; a path
    is kept (reverse proxies). `user:password@` is kept: the client sends it as basic
    auth, and `redact_url` masks the password wherever the host is shown.

    >>> parse_host("example.com")
    'http://example.com:11434'
    >>> parse_host("https://example.com/ollama/")
    'https://example.com:443/ollama'
    >>> parse_host("::1")
    'http://[::1]:11434'
    """
    text = (value or "").strip().strip("\"'").strip()
    shown = redact_url(text)
    port = DEFAULT_PORT
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
        if rest.rstrip("/").lower() == "ollama.com":
            scheme, rest = "https", "ollama.com:443"
    elif scheme.lower() == "http":
        scheme, port = "http", 80
    elif scheme.lower() == "https":
        scheme, port = "https", 443
    else:
        raise ValueError(f"unsupported scheme {scheme!r} in host {shown!r} (use http or https)")
    hostport, _, path = rest.partition("/")
    userinfo, at, hostport = hostport.rpartition("@")
    if at and (not userinfo or any(c.isspace() for c in userinfo)):
        raise ValueError(f"cannot read the user name and password in host {shown!r}")
    host, port = _split_host_port(hostport, port, shown)
    credentials = f"{userinfo}@" if at else ""
    path = path.strip("/")
    url = f"{scheme}://{credentials}{host}:{port}" + (f"/{path}" if path else "")
    try:
        httpx.Request("GET", f"{url}/api/version")  # what the client will build: IPv4, IDNA
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"cannot use host {shown!r}: {redact_url(str(exc))}") from None
    return url


def _split_host_port(hostport: str, port: int, shown: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; an empty host is
    127.0.0.1, as in Ollama."""
    try:  # a bare or bracketed IP address, without a port
        address = ipaddress.ip_address(hostport.strip("[]"))
    except ValueError:
        pass
    else:
        return (f"[{address}]" if address.version == 6 else str(address)), port
    port_text = ""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        if after and not after.startswith(":"):
            raise ValueError(f"cannot read host {shown!r}")
        port_text = after[1:]
        try:
            host = f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise ValueError(f"cannot read host {shown!r}: {host!r} is no IPv6 address") from None
    elif ":" in hostport:
        host, _, port_text = hostport.rpartition(":")
        if ":" in host:
            raise ValueError(f"cannot read host {shown!r}: put an IPv6 address in brackets")
    else:
        host = hostport
    if port_text or hostport.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"cannot read host {shown!r}: {port_text!r} is not a port number")
        port = int(port_text)
    return (host or "127.0.0.1"), port


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, for messages, tables and records."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hostport}{slash}{path}"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without `user:password@`, (user, password) or None)."""
    scheme, sep, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    userinfo, at, hostport = hostport.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    plain = f"{scheme}{sep}{hostport}{slash}{path}"
    return plain, (urllib.parse.unquote(user), urllib.parse.unquote(password))


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1: never reached through a proxy."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


def auth_headers(
    environ: Mapping[str, str] | None = None, variables: tuple[str, ...] = (API_KEY_ENV,)
) -> dict[str, str]:
    """`$OLLAMA_API_KEY` (the first of `variables` that is set) becomes a bearer token;
    it is never shown anywhere else.

    A key that cannot go into a header (a line break, a control or non-ASCII character)
    is refused before anything is sent, with a message that does not show it.
    """
    env = os.environ if environ is None else environ
    variable = next((v for v in variables if env.get(v, "").strip()), API_KEY_ENV)
    key = env.get(variable, "").strip()
    if not key:
        return {}
    bad = next((c for c in key if not " " <= c < "\x7f"), None)
    if bad is not None:
        what = (
            "a line break" if bad in "\r\n"
            else "a non-ASCII character" if ord(bad) > 0x7F
            else "a control character"
        )  # fmt: skip
        raise OllamaError(
            f"${variable} is not a valid key: it contains {what} (the key is not shown;"
            " nothing was sent). Set it again without it."
        )
    return {"Authorization": f"Bearer {key}"}
