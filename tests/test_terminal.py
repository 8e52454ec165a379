"""Terminal IPython in a real pseudo-terminal: the answer streams as text, Ctrl-C closes
the response, and the result lands in `_ollama` as in a notebook."""

from __future__ import annotations

import pexpect
from support import REPLY, SIGINT_THEN_SLEEP, stacks_of

from ollama_nb.testing import StandInServer


def run(child: pexpect.spawn, line: str, prompt: str) -> None:
    child.sendline(f"%%ollama {line}")
    child.sendline(prompt)
    child.sendline("")
    child.sendline("")  # two blank lines end a cell magic at the terminal


def expect_interrupted(child: pexpect.spawn) -> None:
    """The tool request ends as interrupted, in one line; if the tool runs on instead, the
    failure says where the child hung."""
    try:
        child.expect("stand-in-tools · interrupted · ")
    except pexpect.TIMEOUT:
        stacks = stacks_of(child)
        raise AssertionError(f"the interrupt did not end the tool; it hung in:\n{stacks}") from None
    child.expect(r"KeyboardInterrupt: the request was interrupted", timeout=5)
    assert "Traceback" not in child.before


def test_answer_streams_to_stdout(ipython: pexpect.spawn, server: StandInServer) -> None:
    server.configure(reply=REPLY)
    run(ipython, "stand-in", "Say hello.")
    ipython.expect("stand-in · stop · 9 tokens · ")
    assert REPLY in ipython.before
    ipython.sendline("print(repr(_ollama.done_reason), _ollama.text == " + repr(REPLY) + ")")
    ipython.expect("'stop' True")


def test_ctrl_c_closes_the_response(ipython: pexpect.spawn, server: StandInServer) -> None:
    server.configure(token_interval=0.05, tokens=2000)
    run(ipython, "stand-in", "Talk for a long time.")
    record = server.wait_for_request("/api/generate", timeout=10)
    ipython.expect(r"\[stand-in\] ")  # text is streaming
    ipython.sendintr()
    ipython.expect("stand-in · interrupted · ")
    ipython.expect(
        r"KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
    )
    assert "Traceback" not in ipython.before
    assert record.wait_closed(5) and record.disconnected_at is not None
    assert record.chunks_after_disconnect == 0
    ipython.sendline("print(_ollama.done_reason, len(_ollama.text) > 0)")
    ipython.expect("interrupted True")


def test_escape_sequences_in_the_answer_never_reach_the_terminal(
    ipython: pexpect.spawn, server: StandInServer
) -> None:
    hostile = (
        "Title\x1b]0;pwned-title\x07 clip\x1b]52;c;ZXZpbA==\x1b\\ done"
        " \x1b[2J\x1b[31mred\x1b[0m bell\x07 back\x08 csi\x9b31m c1\x9d0;t\x9c end.\nline two"
    )
    server.configure(reply=hostile)
    run(ipython, "stand-in", "Say it.")
    ipython.expect("stand-in · stop · ")
    shown = ipython.before
    assert "Title clip done red bell back csi c1 end.\r\nline two" in shown
    for sequence in ("\x1b]", "\x1b[2J", "\x1b[31m", "\x07", "\x08", "\x9b", "\x9d", "pwned"):
        assert sequence not in shown, repr(sequence)
    # The text itself is kept, escapes and all.
    ipython.sendline(f"print(_ollama.text == {hostile!r})")
    ipython.expect("True")


def test_tool_calls_show_as_lines_and_ctrl_c_ends_a_running_tool(
    ipython: pexpect.spawn, server: StandInServer
) -> None:
    ipython.sendline("def add(a: int, b: int) -> int: return a + b")
    ipython.sendline("")
    ipython.sendline("import time")
    ipython.sendline("def slow(s: float) -> str: time.sleep(s); return 'done'")
    ipython.sendline("")
    run(ipython, "stand-in-tools --tools add,slow", "call: add(a=1, b=2)\ncall: slow(s=60)")
    ipython.expect(r"\[tool\] add\(a=1, b=2\) → 3")
    ipython.expect(r"\[tool\] slow\(s=60\) running; Ctrl-C ends it")
    ipython.sendintr()
    expect_interrupted(ipython)


def test_ctrl_c_just_before_a_tool_blocks_still_ends_it(
    ipython: pexpect.spawn, server: StandInServer
) -> None:
    """Ctrl-C in the instant between a tool's last bytecode and its blocking call (the
    tool sends itself SIGINT from C, then sleeps): CPython would only raise once the 60 s
    sleep returned; the request ends at once instead."""
    for line in SIGINT_THEN_SLEEP.splitlines():
        ipython.sendline(line)
    ipython.sendline("")
    run(ipython, "stand-in-tools --tools stubborn", "call: stubborn(seconds=60)")
    expect_interrupted(ipython)
    ipython.sendline("print('slept:', slept)")
    ipython.expect(r"slept: \[\]")
