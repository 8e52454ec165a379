"""The fault matrix: every way a server can misbehave, against a real kernel.

For each fault the cell must end within its bound (send → execute_reply), keep exactly
the text that arrived in `_ollama.text`, show one short line naming what happened, leave
the stand-in with a closed connection (the client hung up, or the server had finished or
dropped it), and the next cell must run normally.

The measured end times are collected into a table: printed at the end of the module
(visible with `-s`) and written to artifacts/fault_matrix.txt.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from kernel_driver import Cell, KernelDriver
from support import assert_kept_what_arrived, assert_one_line_error, elapsed_of, result, tokens

from ollama_nb.testing import StandInServer, unresponsive_listener

# (name, extra flag on the magic line). Each endpoint runs the whole matrix; `--chat`
# (/api/chat) joined the default /api/generate once it existed.
ENDPOINTS = [("generate", ""), ("chat", "--chat"), ("openai", "")]
PATHS = {"generate": "/api/generate", "chat": "/api/chat", "openai": "/v1/chat/completions"}
# "openai": the same faults through the stand-in's OpenAI-compatible /v1 (a host URL ending
# in /v1 speaks that protocol); where the words differ, these are the words it must say.
OPENAI_SUFFIX = "/v1"
OPENAI_WORDS = {
    "404 unknown model": ("no-such-model", "is not on", "%ollama models"),
    "malformed line after 2 chunks": ("not JSON",),
    "connection refused": ("connection refused", "2 attempts"),
}

READ = 0.5  # --read-timeout for the stalls
CONNECT = 0.5  # --connect-timeout for the hanging connect
TOTAL = 1.0  # --timeout for the trickle
BACKOFF = 0.25  # the client's first connection retry waits this long (_client.BACKOFF_FIRST)
# Beyond the timer that should end the cell: kernel round trip, widget set-up and the
# static record, closing the response. Generous for a loaded 2-core CI machine; a hang
# (the bug this guards against) overshoots it by far.
SLACK = 1.0
QUICK = 1.5  # faults no timer has to notice: the server says or does something at once
SHORT = 250  # characters: "one short message"

REPLY = "".join(f"part{i:02d} " for i in range(40)) + "end."
UNICODE = "Grüße aus Köln 🌍 — 東京 ñandú 🎉 Ελληνικά и кириллица 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 fin."
# 2 MB of answer, non-ASCII included, in ~100-byte tokens (20k chunks): a realistic
# token size would make the stand-in itself the bottleneck of the suite.
BIG_WORD = "Ünïcødé-" + "x" * 88 + " "
BIG = (BIG_WORD * (2 * 2**20 // len(BIG_WORD.encode()) + 1)).rstrip() + "."
BUSY = "server busy, please try again.  maximum pending requests exceeded"

ServerSaw = Literal["disconnected", "completed", "dropped", "nothing"]
ALL = 10**9  # tokens[:ALL]: the whole reply


@dataclass(frozen=True)
class Fault:
    name: str
    knobs: dict[str, Any]
    line: str = ""
    error: str | None = None  # the exception's class name; None: the request must succeed
    words: tuple[str, ...] = ()  # words the one-line message must contain
    kept: int | None = 0  # tokens of the reply kept exactly; None: whatever arrived
    server: ServerSaw = "completed"
    bound: float = QUICK
    floor: float = 0.0  # the cell must not end earlier: the timer, not something else, fired
    model: str = "stand-in"
    host: Literal["stand-in", "refused", "hang"] = "stand-in"
    kind: str | None = None  # OllamaTimeoutError.kind

    @property
    def reply(self) -> str:
        return self.knobs.get("reply", REPLY)


FAULTS = [
    Fault(
        "stall before the first byte",
        {"stall_after": 0},
        f"--read-timeout {READ}",
        "OllamaTimeoutError",
        ("read timeout", f"{READ:g} s"),
        server="disconnected",
        bound=READ + SLACK,
        floor=READ,
        kind="read",
    ),
    Fault(
        "stall after 3 chunks",
        {"stall_after": 3},
        f"--read-timeout {READ}",
        "OllamaTimeoutError",
        ("read timeout",),
        kept=3,
        server="disconnected",
        bound=READ + SLACK,
        floor=READ,
        kind="read",
    ),
    Fault(
        "trickle (total timeout)",
        {"token_interval": 0.1},  # 41 tokens: 4 s of answer, never 1 s of silence
        f"--read-timeout 1 --timeout {TOTAL}",
        "OllamaTimeoutError",
        ("total timeout", f"{TOTAL:g} s"),
        kept=None,
        server="disconnected",
        bound=TOTAL + SLACK,
        floor=TOTAL,
        kind="total",
    ),
    Fault(
        "connection dropped after 5 chunks",
        {"drop_after": 5},
        error="OllamaConnectionError",
        words=("closed the connection",),
        kept=5,
        server="dropped",
    ),
    Fault(
        "error line after 4 chunks",
        {"error_after": 4, "error": "runner crashed"},
        error="OllamaResponseError",
        words=("runner crashed",),
        kept=4,
    ),
    Fault(
        "404 unknown model",
        {},
        error="OllamaModelNotFoundError",
        words=("no-such-model", "ollama pull no-such-model"),
        model="no-such-model",
    ),
    Fault(
        "HTTP 500",
        {"status": 500, "error": "out of memory"},
        error="OllamaResponseError",
        words=("HTTP 500", "out of memory"),
    ),
    Fault(
        "HTTP 503 server busy",
        {"status": 503, "error": BUSY},
        error="OllamaResponseError",
        words=("HTTP 503", "server busy"),
    ),
    Fault(
        "malformed line after 2 chunks",
        # Slow enough that the client has hung up long before the answer would end.
        {"malformed_after": 2, "token_interval": 0.05},
        error="OllamaResponseError",
        words=("not NDJSON",),
        kept=2,
        server="disconnected",
    ),
    Fault(
        "UTF-8 split across reads",
        {"reply": UNICODE, "split_utf8": True},
        kept=ALL,
        bound=QUICK + 0.5,  # every line goes out in two halves 20 ms apart
    ),
    Fault("2 MB answer", {"reply": BIG, "token_interval": 0}, kept=ALL, bound=6.0),
    Fault(
        "connection refused",
        {},
        "--retries 1",
        "OllamaConnectionError",
        ("connection refused", "ollama serve", "2 attempts"),
        server="nothing",
        floor=BACKOFF,
        host="refused",
    ),
    Fault(
        "connect hangs",
        {},
        f"--connect-timeout {CONNECT} --retries 0",
        "OllamaTimeoutError",
        ("connect timeout", f"{CONNECT:g} s"),
        server="nothing",
        bound=CONNECT + SLACK,
        floor=CONNECT,
        host="hang",
        kind="connect",
    ),
    Fault(
        "server closes before headers",
        {"close_before_headers": True},
        error="OllamaConnectionError",
        words=("closed the connection",),
        server="dropped",
    ),
]


@dataclass
class Row:
    endpoint: str
    fault: str
    bound: float
    measured: float
    outcome: str


ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "fault_matrix.txt"


def format_table(rows: list[Row]) -> str:
    head = ("endpoint", "fault", "bound", "measured end", "outcome")
    lines = [
        (r.endpoint, r.fault, f"{r.bound:.2f} s", f"{r.measured:.3f} s", r.outcome) for r in rows
    ]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, lines)])


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Iterator[list[Row]]:
    """The rows of the fault matrix; printed and written out once the module is done."""
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    table = format_table(rows)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(table + "\n")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n\nFault matrix (also in {ARTIFACT}):\n{table}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def target(fault: Fault, server: StandInServer) -> Iterator[str]:
    """The URL the cell talks to: the stand-in, a closed port, or a connect that hangs."""
    if fault.host == "hang":
        with unresponsive_listener() as url:
            yield url
    elif fault.host == "refused":
        yield f"http://127.0.0.1:{free_port()}"
    else:
        yield server.url


def check_error_line(cell: Cell, fault: Fault, url: str, endpoint: str = "") -> str:
    if fault.error is None:
        assert cell.status == "ok", cell.error_text()
        return "ok"
    words = fault.words
    if endpoint == "openai":
        words = OPENAI_WORDS.get(fault.name, words)
    line = assert_one_line_error(cell, fault.error, *words)
    if endpoint == "openai":  # Ollama's advice does not apply to another server
        assert "ollama pull" not in line and "ollama serve" not in line, line
    assert "\n" not in line and len(line) <= SHORT, line
    if fault.host != "stand-in" or fault.error == "OllamaConnectionError":
        assert url in line, line  # which server could not be reached / hung up
    return fault.error


def check_kept_text(kernel: KernelDriver, cell: Cell, fault: Fault) -> str:
    """`_ollama` keeps exactly the text that arrived, and the static record shows it."""
    r = result(kernel)
    text = r["text"]
    if fault.kept is None:
        assert text and fault.reply.startswith(text), text
    else:
        assert text == "".join(tokens(fault.reply)[: fault.kept])
    reason = "stop" if fault.error is None else ("timeout" if fault.kind else "error")
    assert (r["error"], r["done_reason"], r["kind"]) == (fault.error, reason, fault.kind)
    (record,) = cell.records()
    plain = record["text/plain"]
    assert f"· {reason}" in plain.splitlines()[-1], plain[-300:]
    if len(text) < 4096:  # a huge answer's plain copy shows its head only
        assert text in plain
    return text


def check_server_saw(server: StandInServer, cell: Cell, fault: Fault, path: str, text: str) -> None:
    if fault.server == "nothing":
        assert server.requests == []  # no connection ever reached the stand-in
        return
    (record,) = server.requests
    assert record.path == path
    assert record.wait_closed(2), "the stand-in still holds the request open"
    assert record.chunks_after_disconnect == 0
    assert cell.reply is not None
    if fault.server == "completed":
        assert record.completed
    elif fault.server == "dropped":
        assert not record.completed
    else:  # the client hung up: promptly, and before the answer was over
        assert record.disconnected_at is not None and not record.completed
        assert record.disconnected_at <= cell.reply.at + 0.5
    if fault.kept is None:
        assert_kept_what_arrived(text, record)
    if fault.name.startswith("stall before"):
        assert record.first_byte_at is None


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
@pytest.mark.parametrize(("endpoint", "flag"), ENDPOINTS, ids=[e for e, _ in ENDPOINTS])
def test_fault(
    endpoint: str,
    flag: str,
    fault: Fault,
    kernel: KernelDriver,
    server: StandInServer,
    matrix: list[Row],
) -> None:
    server.configure(**{"reply": REPLY, **fault.knobs})
    suffix = OPENAI_SUFFIX if endpoint == "openai" else ""
    with target(fault, server) as url:
        url += suffix
        cell = kernel.run(f"%%ollama {fault.model} {flag} --host {url} {fault.line}\nGo.", 60)
    took = elapsed_of(cell)
    outcome = check_error_line(cell, fault, url, endpoint)
    matrix.append(Row(endpoint, fault.name, fault.bound, took, outcome))
    assert fault.floor <= took <= fault.bound, took
    text = check_kept_text(kernel, cell, fault)
    check_server_saw(server, cell, fault, PATHS[endpoint], text)

    # The next cell runs normally, on the same kernel and server.
    server.reset()
    after = kernel.run(f"%%ollama stand-in {flag} --host {server.url}{suffix}\nAnd now?")
    assert after.status == "ok", after.error_text()
    r = result(kernel)
    assert r["done_reason"] == "stop" and r["text"]
    assert server.last.path == PATHS[endpoint] and server.last.completed
    # The stand-in's own words, or (tests/run --forward) the real engine's.
    assert r["text"].startswith("[stand-in] ") != server.last.forwarded
    if flag == "--chat":
        kernel.ok("%ollama reset")
