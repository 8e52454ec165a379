"""Helpers shared by the kernel tests: run a cell, read `_ollama`, check an error line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from typing import Any

import pexpect
from kernel_driver import Cell, KernelDriver

from ollama_nb.testing import StandInServer

RESULT_FIELDS = (
    "text", "thinking", "model", "done_reason", "stopped", "elapsed", "ttft", "eval_count",
    "prompt_eval_count", "tokens_per_second", "timeout_kind", "json", "final",
)  # fmt: skip

REPLY = "Hello from the stand-in, one token at a time."
# The ids of the open layouts and styles that all live views share, in the kernel.
SHARED_WIDGETS = (
    "[m.model_id for m in __import__('ollama_nb._view', fromlist=['_']).shared_models()"
    " if m.comm is not None]"
)


# A tool that takes a SIGINT in the instant between its last bytecode and a blocking call,
# as Ctrl-C / Interrupt may land: built of C calls only (`ctypes` kill, then the sleep,
# chained by `map`), so no bytecode runs where CPython could raise in between. `slept`
# gets an entry only if the sleep ran its whole length. One statement per line: a kernel,
# `exec` and terminal IPython (line by line, then a blank line) all take it.
SIGINT_THEN_SLEEP = """\
import ctypes, functools, operator, os, signal, time
slept = []
def stubborn(seconds: float) -> str: "Wait."; steps = [functools.partial(ctypes.CDLL(None).kill, os.getpid(), int(signal.SIGINT)), functools.partial(time.sleep, seconds), functools.partial(slept.append, seconds)]; list(map(operator.methodcaller("__call__"), steps)); return "slept"
"""  # noqa: E501


def run_cell(
    kernel: KernelDriver, line: str, prompt: str = "Say hello.", timeout: float = 30
) -> Cell:
    return kernel.run(f"%%ollama {line}\n{prompt}", timeout)


def result(kernel: KernelDriver, name: str = "_ollama") -> dict[str, Any]:
    """The fields of the result stored in `name`, plus the error's name, kind and status."""
    return kernel.value(
        f"{{k: getattr({name}, k) for k in {RESULT_FIELDS!r}}}"
        f" | {{'error': type({name}.error).__name__ if {name}.error else None,"
        f" 'kind': getattr({name}.error, 'kind', None),"
        f" 'status_code': getattr({name}.error, 'status_code', None)}}"
    )


def assert_one_line_error(cell: Cell, name: str, *words: str) -> str:
    assert cell.status == "error"
    err = cell.error()
    assert err is not None and err["ename"] == name, cell.error_text()
    assert len(err["traceback"]) == 1, err["traceback"]
    line = err["traceback"][0]
    assert line.startswith(f"{name}: ")
    for forbidden in ("Traceback", "httpx", "httpcore", "h11", "JSONDecodeError"):
        assert forbidden not in line
    for word in words:
        assert word in line, line
    return line


def tokens(text: str) -> list[str]:
    """How the stand-in splits a reply into chunks: a word with its trailing space."""
    return re.findall(r"\S+\s*|\s+", text)


def elapsed_of(cell: Cell) -> float:
    """Seconds from sending the cell to its execute_reply."""
    assert cell.reply is not None
    return cell.reply.at - cell.sent_at


def assert_kept_what_arrived(text: str, record: Any) -> None:
    """The kept text is a prefix of what the server wrote before it saw the close (chunks
    still in flight when the client hung up, more of them on a busy machine, are lost),
    and the server wrote nothing after it saw the close."""
    kept = len(tokens(text))
    assert 0 < kept <= record.chunks_sent, (kept, record.chunks_sent)
    assert record.chunks_after_disconnect == 0


def spawn_ipython(server: StandInServer) -> pexpect.spawn:
    """Terminal IPython on the stand-in, at its first prompt."""
    # faulthandler: a child that hangs can be made to print every thread's stack
    # (`stacks_of`), so that a failure says where it hung.
    env = {**os.environ, "OLLAMA_HOST": server.url, "TERM": "dumb", "PYTHONFAULTHANDLER": "1"}
    argv = ["-m", "IPython", "--simple-prompt", "--no-banner", "--colors=nocolor", "--quick"]
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=20)
    child.expect(r"In \[1\]: ")
    return child


def stacks_of(child: pexpect.spawn) -> str:
    """Every thread's stack of a hung terminal IPython (it aborts: SIGABRT makes
    faulthandler print them), for a failure message."""
    child.kill(signal.SIGABRT)
    with contextlib.suppress(pexpect.TIMEOUT):
        child.expect(pexpect.EOF, timeout=10)
    return str(child.before)[-6000:]
