"""HTTP edges, as a notebook user meets them: redirects, TLS, 404s, bad chunks, headers,
line commands that trickle or flood, timeouts that say what happened.

Raw-socket servers on loopback play the misbehaving parts; the stand-in plays Ollama.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_driver import KernelDriver
from raw_server import Handler, RawRequest, RawServer, ndjson_response, response, wait_until
from support import REPLY, assert_one_line_error, elapsed_of, result, run_cell, tokens

from ollama_nb._client import BACKOFF_CAP, backoff
from ollama_nb._config import parse_host, redact_url
from ollama_nb.testing import StandInServer

FINAL = {"model": "raw", "done": True, "eval_count": 2, "eval_duration": 1_000_000}


def answer_with(lines: list[str]) -> Handler:
    def handler(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(ndjson_response(lines))

    return handler


# -- redirects ---------------------------------------------------------------------


def redirect_to(target: str, code: int) -> Handler:
    def handler(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(response(f"{code} Moved", extra=f"Location: {target}{request.target}\r\n"))

    return handler


@pytest.mark.parametrize("code", [307, 308])
def test_307_308_redirects_keep_method_and_body(
    kernel: KernelDriver, server: StandInServer, code: int
) -> None:
    server.configure(reply=REPLY)
    with RawServer(redirect_to(server.url, code)) as front:
        cell = run_cell(kernel, f"stand-in --host {front.url}", "Redirected prompt.")
        assert cell.status == "ok", cell.error_text()
        assert front.requests[0].method == "POST"
    assert result(kernel)["text"] == REPLY
    record = server.last
    assert record.method == "POST" and record.path == "/api/generate"
    assert record.body["prompt"] == "Redirected prompt."


@pytest.mark.parametrize("code", [301, 302])
def test_301_302_redirects_turn_post_into_get_as_the_official_client(
    kernel: KernelDriver, server: StandInServer, code: int
) -> None:
    with RawServer(redirect_to(server.url, code)) as front:
        cell = run_cell(kernel, f"stand-in --host {front.url}")
    line = assert_one_line_error(cell, "OllamaResponseError", "after a redirect to GET")
    assert server.last.method == "GET", line
    # The line commands are GETs: a moved server keeps working.
    with RawServer(redirect_to(server.url, code)) as front:
        cell = kernel.run(f"%config OllamaMagics.host = '{front.url}'\n%ollama version")
        kernel.ok("%config OllamaMagics.host = None")
    assert cell.status == "ok" and "stand-in" in cell.stream_text() + str(cell.outputs())


def test_redirect_loops_are_bounded(kernel: KernelDriver) -> None:
    holder: dict[str, str] = {}

    def loop(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(response("307 Again", extra=f"Location: {holder['url']}/again\r\n"))

    with RawServer(loop) as front:
        holder["url"] = front.url
        cell = run_cell(kernel, f"stand-in --host {front.url}")
        assert len(front.requests) == 11  # the first and 10 redirects
    assert_one_line_error(cell, "OllamaResponseError", "redirected more than 10 times")


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
               "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def test_certificate_failure_says_so_and_is_not_retried(
    kernel: KernelDriver, self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    lines = [json.dumps({"response": "over TLS", "done": False}), json.dumps(FINAL)]
    with RawServer(answer_with(lines), tls=tls) as secure:
        cell = run_cell(kernel, f"stand-in --host {secure.url} --retries 3")
        line = assert_one_line_error(
            cell, "OllamaConnectionError", "certificate", "SSL_CERT_FILE", "not retried"
        )
        assert "ollama serve" not in line
        assert secure.connections == 1, secure.connections  # no retry
        # The advice works: trust the CA, and the same cell goes through.
        kernel.ok(f"import os; os.environ['SSL_CERT_FILE'] = {str(cert)!r}")
        try:
            cell = run_cell(kernel, f"stand-in --host {secure.url}")
        finally:
            kernel.ok("del os.environ['SSL_CERT_FILE']")
        assert cell.status == "ok", cell.error_text()
    assert result(kernel)["text"] == "over TLS"


# -- 404s and bad chunks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"404 page not found", "404 page not found"),  # Ollama's router: a wrong path
        (b'{"error": "Not Found"}', "Not Found"),  # a reverse proxy's JSON 404
    ],
)
def test_a_404_that_is_not_about_a_model(kernel: KernelDriver, body: bytes, detail: str) -> None:
    def router(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(response("404 Not Found", body, "text/plain"))

    with RawServer(router) as wrong:
        cell = run_cell(kernel, f"stand-in --host {wrong.url}/wrong-prefix")
    line = assert_one_line_error(
        cell, "OllamaResponseError", f"{wrong.url}/wrong-prefix/api/generate",
        "no Ollama API answers", detail,
    )  # fmt: skip
    assert "pull" not in line
    assert result(kernel)["status_code"] == 404


def test_ollamas_json_404_is_a_missing_model(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, "no-such-model")
    assert_one_line_error(cell, "OllamaModelNotFoundError", "ollama pull no-such-model")


@pytest.mark.parametrize(
    ("line", "chunk"),
    [
        ("stand-in --chat", {"message": "str", "done": False}),
        ("stand-in --chat", {"message": {"content": 5}, "done": False}),
        ("stand-in", {"response": ["a"], "done": False}),
        ("stand-in", {"response": "ok", "thinking": {"x": 1}, "done": False}),
    ],
)
def test_wrong_typed_chunks_are_a_response_error(
    kernel: KernelDriver, line: str, chunk: dict[str, object]
) -> None:
    with RawServer(answer_with([json.dumps(chunk), json.dumps(FINAL)])) as bad:
        cell = run_cell(kernel, f"{line} --host {bad.url}")
    assert_one_line_error(cell, "OllamaResponseError", "the server sent a chunk")
    kernel.ok("%ollama reset")


# -- headers and done_reason --------------------------------------------------------


def test_user_agent_and_accept(kernel: KernelDriver, server: StandInServer) -> None:
    version = kernel.value("__import__('importlib.metadata').metadata.version('ollama-nb')")
    cell = run_cell(kernel, "stand-in")
    assert cell.status == "ok", cell.error_text()
    stream = server.last.headers
    kernel.ok("%ollama models")
    call = server.last.headers
    assert stream["user-agent"].startswith(f"ollama-nb/{version} (python/3.")
    assert stream["user-agent"] == call["user-agent"]
    assert stream["accept"] == "application/x-ndjson"
    assert call["accept"] == "application/json"
    print(f"\nUser-Agent: {stream['user-agent']}")


def test_a_final_chunk_without_done_reason_is_recorded_as_none(kernel: KernelDriver) -> None:
    kernel.ok("from ollama_nb._magics import active; active().results.clear()")
    lines = [json.dumps({"response": "Two words", "done": False}), json.dumps(FINAL)]
    with RawServer(answer_with(lines)) as raw:
        cell = run_cell(kernel, f"raw --host {raw.url}")
    assert cell.status == "ok", cell.error_text()
    assert result(kernel)["done_reason"] is None
    status = cell.records()[-1]["text/plain"].splitlines()[-1]
    assert status.startswith("raw · done · 2 tokens · 2000.0 tokens/s · "), status
    stats = kernel.ok("%ollama stats")
    shown = json.dumps([m.content for m in stats.outputs()])
    assert "done" in shown and "error" not in shown, shown
    print(f"\nstatus line: {status}")


# -- timeouts: what happened --------------------------------------------------------


def test_read_timeout_before_the_first_chunk_says_loading_or_queued(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(first_chunk_delay=30)
    cell = run_cell(kernel, "stand-in --read-timeout 1")
    line = assert_one_line_error(
        cell, "OllamaTimeoutError", "sent nothing for 1 s", "loading", "queued"
    )
    assert "after" not in line


def test_read_timeout_mid_answer_says_how_many_chunks(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY, stall_after=3)
    cell = run_cell(kernel, "stand-in --read-timeout 1")
    line = assert_one_line_error(
        cell, "OllamaTimeoutError", "went quiet for 1 s after 3 chunks", "mid-answer"
    )
    assert "loading" not in line and "queued" not in line
    assert result(kernel)["text"] == "".join(tokens(REPLY)[:3])


# -- line commands: total timeout, size limit, interrupt ------------------------------


def trickle(request: RawRequest, conn: socket.socket) -> None:
    body = json.dumps({"models": [{"name": "x" * 200}]}).encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    for byte in body:  # one byte every 0.2 s: never silent long enough for a read timeout
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


@pytest.fixture
def line_host(kernel: KernelDriver) -> Iterator[None]:
    yield
    kernel.ok("%config OllamaMagics.host = None\n%config OllamaMagics.timeout = None")


def test_line_commands_obey_the_total_timeout(kernel: KernelDriver, line_host: None) -> None:
    with RawServer(trickle) as slow:
        kernel.ok(f"%config OllamaMagics.host = '{slow.url}'\n%config OllamaMagics.timeout = 1")
        for command in ("%ollama models", "%ollama ps", "%ollama version"):
            cell = kernel.run(command)
            took = elapsed_of(cell)
            assert_one_line_error(cell, "OllamaTimeoutError", "total timeout", "1 s")
            print(f"\n{command} against a trickling server, --timeout 1: {took:.2f} s")
            assert took < 5, took
        # The model lookup of a cell without a model, too.
        kernel.ok("import os; os.environ.pop('OLLAMA_MODEL', None)")
        cell = kernel.run("%%ollama\nHello.")
        assert "total timeout" in cell.error_text() and elapsed_of(cell) < 5


def test_line_commands_refuse_a_huge_body(kernel: KernelDriver, line_host: None) -> None:
    def flood(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip
        chunk = b"[" * 65536
        for _ in range(17 * 16 + 1):  # 17 MiB, until the client hangs up
            conn.sendall(chunk)

    with RawServer(flood) as big:
        kernel.ok(f"%config OllamaMagics.host = '{big.url}'")
        before = kernel.value("__import__('resource').getrusage(0).ru_maxrss")
        cell = kernel.run("%ollama models")
        after = kernel.value("__import__('resource').getrusage(0).ru_maxrss")
    assert_one_line_error(cell, "OllamaResponseError", "more than 16 MiB")
    print(f"\nkernel max RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB")
    assert after - before < 100 * 1024


@pytest.mark.parametrize("autoawait", ["on", "off"])
def test_interrupting_a_line_command_is_one_line(
    kernel: KernelDriver, line_host: None, autoawait: str
) -> None:
    kernel.ok(f"%autoawait {autoawait}")
    try:
        with RawServer(trickle) as slow:
            kernel.ok(f"%config OllamaMagics.host = '{slow.url}'")
            cell = kernel.submit("%ollama models")
            wait_until(lambda: bool(slow.requests), 10, "the request")
            kernel.interrupt()
            kernel.finish(cell)
    finally:
        kernel.ok("%autoawait on")
    # It names the command: nothing of it is in `_ollama`.
    assert cell.error()["traceback"] == ["KeyboardInterrupt: %ollama models was interrupted"]


# -- pure parts ---------------------------------------------------------------------


def test_retry_pauses_are_capped() -> None:
    pauses = [backoff(n) for n in range(1, 21)]
    assert pauses[:4] == [0.25, 0.5, 1.0, 2.0] and max(pauses) == BACKOFF_CAP == 8.0
    print(f"\n--retries 20 against a refused port waits at most {sum(pauses):.1f} s")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('"example.com"', "http://example.com:11434"),
        ("'http://example.com:8080'", "http://example.com:8080"),
        ("  example.com  ", "http://example.com:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("http://[::1]", "http://[::1]:80"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("example.com", "http://example.com:11434"),
        ("ollama.com", "https://ollama.com:443"),
        ("https://ollama.com", "https://ollama.com:443"),
        ("example.com/ollama/v1/", "http://example.com:11434/ollama/v1"),
        ("https://u:p%40ss@example.com/x", "https://u:p%40ss@example.com:443/x"),
        (":8080", "http://127.0.0.1:8080"),
    ],
)
def test_host_parsing_follows_ollama(given: str, expected: str) -> None:
    assert parse_host(given) == expected


@pytest.mark.parametrize("bad", ["example.com:99999", "[nope]:1", "fe80::1:x", "ftp://x"])
def test_bad_hosts_are_value_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_host(bad)


def test_passwords_in_hosts_are_masked() -> None:
    assert redact_url("http://me:hunter2@h:1/p") == "http://me:***@h:1/p"
    assert redact_url("me:p@ss:w@h:1") == "me:***@h:1"
    assert redact_url("http://h:1") == "http://h:1"
    with pytest.raises(ValueError) as info:
        parse_host("http://me:hunter2@h:99999")
    assert "hunter2" not in str(info.value)
