"""Proxies from the kernel's environment: loopback never goes through them; other hosts do.

A real HTTP proxy on loopback records what reaches it and answers for the far host itself,
so no traffic leaves the machine: `http://ollama.invalid:11434` is only ever a name that
the proxy receives in an absolute URI (the kernel never resolves it).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections.abc import Iterator

import pytest
from kernel_driver import KernelDriver
from raw_server import RawRequest, RawServer, closed_port, ndjson_response, response
from support import REPLY, assert_one_line_error, result, run_cell

from ollama_nb.testing import StandInServer

FAR = "http://ollama.invalid:11434"
SECRET = "sk-proxy-SECRET456"


def answer_as_the_far_host(request: RawRequest, conn: socket.socket) -> None:
    if request.target.endswith("/api/generate"):
        lines = [
            json.dumps({"model": "far", "response": "via the proxy", "done": False}),
            json.dumps({"model": "far", "done": True, "done_reason": "stop"}),
        ]
        conn.sendall(ndjson_response(lines))
    elif request.target.endswith("/api/version"):
        conn.sendall(response("200 OK", json.dumps({"version": "9.9.9-far"}).encode()))
    else:
        conn.sendall(response("502 Bad Gateway", b"{}"))


@pytest.fixture(scope="module")
def proxy() -> Iterator[RawServer]:
    with RawServer(answer_as_the_far_host) as server:
        yield server


@pytest.fixture(scope="module")
def proxied_kernel(standin_server: StandInServer, proxy: RawServer) -> Iterator[KernelDriver]:
    """A kernel started with every proxy variable pointing at the recording proxy."""
    env = {
        "OLLAMA_HOST": standin_server.url,
        "OLLAMA_MODEL": "",
        "OLLAMA_API_KEY": SECRET,
        "HTTP_PROXY": proxy.url,
        "HTTPS_PROXY": proxy.url,
        "ALL_PROXY": proxy.url,
        "http_proxy": proxy.url,
    }
    kernel = KernelDriver(sys.executable, env=env)
    kernel.ok("%load_ext ollama_nb\nimport os")
    yield kernel
    kernel.close()


@pytest.fixture
def pk(proxied_kernel: KernelDriver, proxy: RawServer) -> Iterator[KernelDriver]:
    proxy.requests.clear()
    yield proxied_kernel
    proxied_kernel.settle()


@pytest.mark.parametrize("host", ["", "--host localhost:{port}", "--host [::1]:{port}"])
def test_loopback_goes_direct_past_a_live_proxy(
    pk: KernelDriver, proxy: RawServer, server: StandInServer, host: str
) -> None:
    if "::1" in host and not socket.has_ipv6:
        pytest.skip("no IPv6 loopback here")
    server.configure(api_key=SECRET, reply=REPLY)
    port = server.url.rsplit(":", 1)[1]
    cell = run_cell(pk, f"stand-in {host.format(port=port)}")
    if cell.status != "ok" and "::1" in host and "connection refused" in cell.error_text():
        pytest.skip("the stand-in does not listen on ::1")
    assert cell.status == "ok", cell.error_text()
    assert result(pk)["text"] == REPLY
    assert server.last.headers["authorization"] == f"Bearer {SECRET}"
    assert pk.ok("%ollama version").status == "ok"
    assert proxy.requests == []  # neither the prompt nor the key reached the proxy


def test_other_hosts_use_the_proxy(pk: KernelDriver, proxy: RawServer) -> None:
    cell = run_cell(pk, f"far --host {FAR}", "Far prompt.")
    assert cell.status == "ok", cell.error_text()
    assert result(pk)["text"] == "via the proxy"
    [seen] = proxy.requests
    assert (seen.method, seen.target) == ("POST", f"{FAR}/api/generate")
    assert json.loads(seen.body)["prompt"] == "Far prompt."


def test_a_dead_proxy_does_not_hide_a_running_ollama(
    pk: KernelDriver, server: StandInServer
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")
    pk.ok(f"saved = {{k: os.environ[k] for k in {names!r}}}\n"
          + "".join(f"os.environ[{k!r}] = {dead!r}\n" for k in names))  # fmt: skip
    try:
        cell = run_cell(pk, "stand-in")
        assert cell.status == "ok", cell.error_text()
        far = run_cell(pk, f"far --host {FAR} --retries 0")
        line = assert_one_line_error(far, "OllamaConnectionError", "through the proxy", dead)
        print(f"\nfar host, dead proxy: {line}")
    finally:
        pk.ok("os.environ.update(saved)")


def test_a_socks_proxy_is_used_for_other_hosts_only(pk: KernelDriver) -> None:
    if importlib.util.find_spec("socksio") is None:
        pytest.skip("socksio is not installed: see the next test")
    with RawServer(answer_as_the_far_host, socks5=True) as socks:
        pk.ok(
            "saved = {k: os.environ.pop(k) for k in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy')}\n"
            "saved['ALL_PROXY'] = os.environ['ALL_PROXY']\n"
            f"os.environ['ALL_PROXY'] = 'socks5h://127.0.0.1:{socks.port}'"
        )
        try:
            cell = run_cell(pk, f"far --host {FAR}")
            assert cell.status == "ok", cell.error_text()
            assert result(pk)["text"] == "via the proxy"
            assert socks.socks_targets == ["ollama.invalid:11434"]
            assert run_cell(pk, "stand-in").status == "ok"
            assert len(socks.socks_targets) == 1  # loopback went direct
        finally:
            pk.ok("os.environ.update(saved)")


def test_a_socks_proxy_without_socksio_is_one_line(pk: KernelDriver) -> None:
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed here: httpx speaks SOCKS")
    pk.ok(
        "saved = {k: os.environ.pop(k) for k in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy')}\n"
        "saved['ALL_PROXY'] = os.environ['ALL_PROXY']\n"
        "os.environ['ALL_PROXY'] = 'socks5://user:pw-SECRET789@127.0.0.1:1080'"
    )
    try:
        cell = run_cell(pk, f"far --host {FAR}")
        line = assert_one_line_error(cell, "OllamaConnectionError", "SOCKS", "pip install socksio")
        assert "SECRET789" not in line and "user:***@" in line
        assert run_cell(pk, "stand-in").status == "ok"  # loopback: the proxy is not used
        pk.ok("os.environ['ALL_PROXY'] = 'socks4://127.0.0.1:1080'")
        cell = run_cell(pk, f"far --host {FAR}")
        assert_one_line_error(cell, "OllamaConnectionError", "proxy", "socks4://")
    finally:
        pk.ok("os.environ.update(saved)")
