"""Tools in real kernels: `%%ollama --tools` and `agenerate(tools=...)` against the
stand-in's `stand-in-tools` — the record, `_ollama.tool_calls`, --chat, Stop between
rounds, Interrupt inside a running tool, and --confirm's Run / Skip clicks."""

from __future__ import annotations

import pathlib
import textwrap

import pytest
from kernel_driver import KernelDriver
from support import SIGINT_THEN_SLEEP, assert_one_line_error

from ollama_nb.testing import StandInServer

KERNELS = ["kernel", "k6_kernel", "colab_kernel"]

DEFINE = textwrap.dedent('''
    import pathlib, tempfile, time
    ran = []
    started = pathlib.Path(tempfile.mkdtemp()) / "started"

    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        ran.append(("add", a, b))
        return a + b

    def slow(seconds: float) -> str:
        """Wait."""
        ran.append(("slow", seconds))
        started.touch()  # for the test: the tool runs now
        time.sleep(seconds)
        return "waited"
''')


def define(kernel: KernelDriver) -> None:
    kernel.ok(DEFINE)


def test_a_tool_cell_shows_each_call_above_the_answer(
    kernel: KernelDriver, server: StandInServer
) -> None:
    define(kernel)
    cell = kernel.ok(
        "%%ollama stand-in-tools --tools add --chat\n"
        "call: add(a=1, b=2); add(a=1, b=2)\ncall: add(a=3, b=4); nope(x=1)"
    )
    (record,) = cell.records()
    text = record["text/plain"]
    assert text.index("tool calls:") < text.index("[stand-in] tool results")
    assert "1. add(a=1, b=2) → 3" in text and "3. add(a=3, b=4) → 7" in text
    assert "4. nope(x=1) ✗ unknown tool 'nope'; the tools are: add" in text
    assert "<b>Tool calls</b>" in record["text/html"]
    assert kernel.value("ran") == [["add", 1, 2], ["add", 1, 2], ["add", 3, 4]]
    calls = kernel.value(
        "[(c.name, c.arguments, c.result, c.error, c.skipped, c.elapsed >= 0)"
        " for c in _ollama.tool_calls]"
    )
    assert calls == [
        ["add", {"a": 1, "b": 2}, "3", None, False, True],
        ["add", {"a": 1, "b": 2}, "3", None, False, True],
        ["add", {"a": 3, "b": 4}, "7", None, False, True],
        ["nope", {"x": 1}, None, "unknown tool 'nope'; the tools are: add", False, True],
    ]
    # --chat keeps the tool turns: the next turn sends them, the history shows them.
    kernel.ok("%%ollama stand-in-tools --tools add --chat\nAnd now?")
    messages = server.requests[-1].body["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "tool", "tool",
                     "assistant", "user"]  # fmt: skip
    history = kernel.ok("%ollama history").outputs()[-1].content["data"]["text/plain"]
    assert "[tool] add(a=3, b=4) → 7" in history
    kernel.ok("%ollama reset")


def test_usage_errors(kernel: KernelDriver, server: StandInServer) -> None:
    define(kernel)
    cell = kernel.run("%%ollama stand-in-tools --tools add --each items\n{item}")
    assert "--tools goes with single requests, not with --each" in cell.error_text()
    cell = kernel.run("%%ollama stand-in-tools --tools nothing_here\nHi")
    assert "--tools nothing_here: no function 'nothing_here' in the notebook" in cell.error_text()
    cell = kernel.run("%%ollama stand-in --tools add\nHi")
    line = assert_one_line_error(cell, "OllamaResponseError", "cannot use tools")
    assert "stand-in-tools:latest" in line
    (record,) = cell.records()  # the status line of the request that was not sent
    assert record["text/plain"].startswith("stand-in · error · 0 tokens")
    kernel.ok("%autoawait off")
    try:
        cell = kernel.run("%%ollama stand-in-tools --tools add --confirm\nHi")
        assert "--confirm needs clicks to reach the running cell" in cell.error_text()
    finally:
        kernel.ok("%autoawait on")
    assert not [r for r in server.requests if r.path == "/api/chat"]


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_interrupt_ends_a_running_tool_and_the_loop(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    define(kernel)
    flag = pathlib.Path(kernel.value("str(started)"))
    server.configure(first_chunk_delay=0.5)  # time to draw the view before the call
    cell = kernel.submit(
        "%%ollama stand-in-tools --tools slow,add\ncall: slow(seconds=60)\ncall: add(a=1, b=1)"
    )
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 10, "the live view")
    kernel.show_view(root.content["comm_id"])
    kernel.wait_for(flag.exists, 15, "the tool to start")
    # The view shows the call as it runs, and says what ends it. (Wait for that update
    # itself: the one that showed the call as it arrived may be read first.)
    running = "slow(seconds=60)</code> running; Interrupt (■) ends it"
    kernel.wait_for(
        lambda: [
            m
            for m in kernel.messages
            if m.type == "comm_msg"
            and m.at >= cell.sent_at
            and running in str(m.content["data"].get("state", {}).get("value", ""))
        ],
        10,
        "the running call in the view, with what ends it",
    )
    sent = kernel.interrupt()
    kernel.finish(cell, timeout=15)
    assert cell.reply.at - sent < 5  # not the tool's 60 s
    assert cell.error()["ename"] == "RequestInterrupted"
    assert cell.error()["traceback"] == [
        "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
    ]
    assert kernel.value("_ollama.done_reason") == "interrupted"
    assert kernel.value("[(c.name, c.error) for c in _ollama.tool_calls]") == [
        ["slow", "interrupted"]
    ]
    assert kernel.value("ran") == [["slow", 60]]  # the loop ended: add never ran
    assert len([r for r in server.requests if r.path == "/api/chat"]) == 1
    kernel.ok("print('kernel goes on')")


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_stop_between_rounds_runs_no_further_call(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    define(kernel)
    server.configure(first_chunk_delay=3.0)  # each response: 3 s of "model load"
    cell = kernel.submit(
        "%%ollama stand-in-tools --tools add\ncall: add(a=1, b=1)\ncall: add(a=2, b=2)"
    )
    stop = kernel.wait_for(lambda: cell.widget(description="Stop"), 10, "the Stop button")
    kernel.wait_for(
        lambda: len([r for r in server.requests if r.path == "/api/chat"]) == 2, 15, "round 2"
    )
    clicked = kernel.click(stop.content["comm_id"])
    kernel.finish(cell, timeout=10)
    assert cell.status == "ok" and cell.reply.at - clicked < 1.0
    assert kernel.value("_ollama.done_reason") == "stopped"
    assert kernel.value("ran") == [["add", 1, 1]]
    assert server.requests[-1].wait_closed(5)


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_confirm_run_and_skip(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    define(kernel)
    cell = kernel.submit(
        "%%ollama stand-in-tools --tools add --confirm\ncall: add(a=1, b=2); add(a=5, b=5)"
    )
    first = kernel.wait_for(lambda: cell.widget(description="Run"), 10, "the Run button")
    kernel.click(first.content["comm_id"])

    def second_skip() -> object:
        skips = [
            m for m in cell.comm_opens() if m.content["data"]["state"].get("description") == "Skip"
        ]
        return skips[1] if len(skips) > 1 else None

    skip = kernel.wait_for(second_skip, 10, "the second Skip button")
    kernel.click(skip.content["comm_id"])
    kernel.finish(cell, timeout=10)
    assert cell.status == "ok", cell.error_text()
    assert kernel.value("ran") == [["add", 1, 2]]
    assert kernel.value("[c.skipped for c in _ollama.tool_calls]") == [False, True]
    answer = kernel.value("_ollama.text")
    assert answer == "[stand-in] tool results: add → 3; add → the user declined to run this call"


@pytest.mark.parametrize(
    "code",
    [
        "ollama_nb.generate('call: slow(seconds=60)', 'stand-in-tools', tools=[slow])",
        "%autoawait off\n%%ollama stand-in-tools --tools slow\ncall: slow(seconds=60)",
    ],
    ids=["generate", "autoawait-off"],
)
def test_interrupt_ends_a_tool_running_on_the_worker_thread(
    code: str, kernel: KernelDriver, server: StandInServer
) -> None:
    """Synchronous cells run the request (and so the tools) on a worker thread: Interrupt
    still raises inside the tool."""
    define(kernel)
    kernel.ok("import ollama_nb")
    flag = pathlib.Path(kernel.value("str(started)"))
    if code.startswith("%autoawait"):
        kernel.ok("%autoawait off")
        code = code.split("\n", 1)[1]
    try:
        cell = kernel.submit(code)
        kernel.wait_for(flag.exists, 15, "the tool to start")
        sent = kernel.interrupt()
        kernel.finish(cell, timeout=15)
    finally:
        kernel.ok("%autoawait on")
    assert cell.reply.at - sent < 5, "the tool's 60 s"
    assert cell.error()["ename"] == "RequestInterrupted", cell.error_text()
    assert len(cell.error()["traceback"]) == 1
    kernel.ok("print('kernel goes on')")


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_an_interrupt_just_before_a_tool_blocks_still_ends_it(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    """Interrupt in the instant between a tool's last bytecode and its blocking call (the
    tool sends its kernel SIGINT from C calls, then sleeps): CPython would raise only once
    the 60 s sleep had returned; the cell ends at once instead."""
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    kernel.ok(SIGINT_THEN_SLEEP)
    cell = kernel.run_drawn("%%ollama stand-in-tools --tools stubborn\ncall: stubborn(seconds=60)")
    assert cell.error()["ename"] == "RequestInterrupted", cell.error_text()
    assert len(cell.error()["traceback"]) == 1
    assert kernel.value("slept") == []
    assert kernel.value("_ollama.tool_calls[0].error") == "interrupted"


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_interrupt_inside_a_tool_of_an_awaited_agenerate_is_an_interrupt(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    """In an async cell the tool runs on the kernel's loop: Interrupt raises inside it, and
    the awaited call ends as an interrupt (RequestInterrupted with what arrived), not as a
    cancellation."""
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    define(kernel)
    kernel.ok("import ollama_nb")
    flag = pathlib.Path(kernel.value("str(started)"))
    cell = kernel.submit(
        "r = await ollama_nb.agenerate('call: slow(seconds=60)', 'stand-in-tools',"
        " tools=[slow], display=False)"
    )
    kernel.wait_for(flag.exists, 15, "the tool to start")
    sent = kernel.interrupt()
    kernel.finish(cell, timeout=15)
    assert cell.reply.at - sent < 5, "the tool's 60 s"
    assert cell.error()["ename"] == "RequestInterrupted", cell.error_text()
    assert len(cell.error()["traceback"]) == 1
    kernel.ok("print('kernel goes on')")
