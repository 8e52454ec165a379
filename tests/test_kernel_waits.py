"""Interrupt ends every wait before the stream, on every supported kernel: a server that
accepted the connection and stays silent (a dead tunnel, a stuck proxy) must not hold
the cell until the read timeout. A real kernel interrupt (jupyter_client), a raw server
on loopback that reads the request and never answers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from kernel_driver import Cell, KernelDriver
from raw_server import RawRequest, RawServer

# A 1x1 PNG: what `--image` sends, so that the vision check (/api/show) runs first.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
    b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe"
    b"\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
)
NOT_SENT = "KeyboardInterrupt: interrupted before the prompt was sent; _ollama is unchanged"
# Each wait before a stream, the cell that makes it, and the one line an interrupt leaves.
WAITS = {
    "models": ("%ollama models", "KeyboardInterrupt: %ollama models was interrupted"),
    "show": ("%ollama show stand-in", "KeyboardInterrupt: %ollama show stand-in was interrupted"),
    "no model": ("%%ollama\nSay hello.", NOT_SENT),
    "vision check": ("%%ollama stand-in --image picture\nWhat is this?", NOT_SENT),
    "batch check": (
        "%%ollama --each items\nSay {item}.",
        "KeyboardInterrupt: the batch was interrupted before its first element was sent;"
        " _ollama is unchanged",
    ),
    # The stream's own waits (before its first line), for comparison: they end as fast.
    "stream": (
        "%%ollama stand-in\nSay hello.",
        "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text",
    ),
    "pull": (
        "%ollama pull stand-in-x",
        "KeyboardInterrupt: %ollama pull stand-in-x was interrupted; pulling again resumes it",
    ),
}
BOUND = 3.0  # seconds from the interrupt to the cell's reply (the contract says 1 s)


def silent(_request: RawRequest, conn: socket.socket) -> None:
    """Read the request, answer nothing, until the client hangs up."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


@contextlib.contextmanager
def dead_host(kernel: KernelDriver) -> Iterator[RawServer]:
    with RawServer(silent) as dead:
        kernel.ok(
            f"%config OllamaMagics.host = '{dead.url}'\n"
            f"%config OllamaMagics.read_timeout = 30\n"
            f"picture = {PNG!r}\nitems = ['a', 'b']\n_ollama = 'before'"
        )
        try:
            yield dead
        finally:
            kernel.settle()
            kernel.ok(
                "%config OllamaMagics.host = None\n%config OllamaMagics.read_timeout = 120\n"
                "%autoawait on"
            )


def interrupt_the_wait(kernel: KernelDriver, dead: RawServer, code: str) -> tuple[Cell, float]:
    """Run `code`, interrupt the kernel once the server holds the request; the cell and
    the seconds from the interrupt to its reply."""
    cell = kernel.submit(code)
    kernel.wait_for(lambda: dead.requests, 15, "the request on the silent server")
    sent = kernel.interrupt()
    kernel.finish(cell, timeout=45)
    assert cell.reply is not None
    return cell, cell.reply.at - sent


def assert_one_line_interrupt(cell: Cell, line: str) -> None:
    assert cell.status == "error"  # re-raised: Run All stops here
    error = cell.error()
    assert error is not None and error["traceback"] == [line], cell.error_text()
    assert "CancelledError" not in cell.error_text()


@pytest.mark.parametrize("wait", list(WAITS))
@pytest.mark.parametrize("kernel_name", ["kernel", "k6_kernel", "colab_kernel"])
def test_interrupt_ends_a_wait_on_a_silent_server_at_once(
    kernel_name: str, wait: str, request: pytest.FixtureRequest
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    code, line = WAITS[wait]
    with dead_host(kernel) as dead:
        cell, took = interrupt_the_wait(kernel, dead, code)
        print(f"\n{kernel_name}, {wait}: the cell ended {took:.2f} s after the interrupt")
        assert took < BOUND, f"the cell ended {took:.1f} s after the interrupt"
        assert_one_line_interrupt(cell, line)
        assert kernel.value("1 + 1") == 2  # the kernel carries on
        if wait != "stream":
            assert kernel.value("_ollama") == "before"  # nothing stored


# The same waits where the cell runs synchronously (the request on a worker thread).
SYNCHRONOUS = {
    "models, autoawait off": ("%autoawait off", "%ollama models", WAITS["models"][1]),
    "no model, autoawait off": ("%autoawait off", "%%ollama\nSay hello.", NOT_SENT),
    "models among other code": ("", "%ollama models\npass", WAITS["models"][1]),
}


@pytest.mark.parametrize("case", list(SYNCHRONOUS))
def test_interrupt_ends_a_wait_on_the_synchronous_path(kernel: KernelDriver, case: str) -> None:
    setup, code, line = SYNCHRONOUS[case]
    with dead_host(kernel) as dead:
        if setup:
            kernel.ok(setup)
        cell, took = interrupt_the_wait(kernel, dead, code)
        assert took < BOUND, f"the cell ended {took:.1f} s after the interrupt"
        assert_one_line_interrupt(cell, line)
        assert kernel.value("1 + 1") == 2
