"""Cancelling and interrupting the Python API (INTERFACE.md, Clarifications (0.3)).

Cancelling an `agenerate`/`amap` from asyncio (`wait_for`, `asyncio.timeout`,
`task.cancel()`, a cancelled `gather`) closes the response and is a `CancelledError` in
the awaiting code: the kernel, and a script, go on. Only a real Interrupt raises
`RequestInterrupted`, which carries what arrived in `.partial`. On real kernels (7.4,
6.29, the Colab stack) against the stand-in, which records each client disconnect.
"""

from __future__ import annotations

import textwrap

import pytest
from kernel_driver import Cell, KernelDriver
from test_api import run_script, visible_records

from ollama_nb.testing import StandInServer

KERNELS = [
    "kernel",
    pytest.param("k6_kernel", marks=pytest.mark.k6),
    pytest.param("colab_kernel", marks=pytest.mark.colab),
    pytest.param("py310_kernel", marks=pytest.mark.colab),
]
INTERRUPTED = "KeyboardInterrupt: the request was interrupted; the response was closed"
BATCH_INTERRUPTED = "KeyboardInterrupt: the batch was interrupted; its responses are closed"

# Each cell cancels a call from asyncio after 1.0 s of a long answer, and prints what the
# awaiting code caught.
CANCELLING = {
    "wait_for agenerate": """
        try:
            await asyncio.wait_for(ollama_nb.agenerate('Talk.', 'stand-in'), 1.0)
        except asyncio.TimeoutError:
            print('caught TimeoutError')
    """,
    "wait_for amap": """
        try:
            await asyncio.wait_for(
                ollama_nb.amap('Talk {item}.', [1, 2, 3, 4], 'stand-in', parallel=2), 1.0
            )
        except asyncio.TimeoutError:
            print('caught TimeoutError')
    """,
    "task.cancel() agenerate": """
        task = asyncio.ensure_future(ollama_nb.agenerate('Talk.', 'stand-in'))
        await asyncio.sleep(1.0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print('caught CancelledError')
    """,
    "task.cancel() amap": """
        batch = ollama_nb.amap('Talk {item}.', ['a', 'b'], 'stand-in', parallel=2)
        task = asyncio.ensure_future(batch)
        await asyncio.sleep(1.0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print('caught CancelledError')
    """,
    # asyncio.timeout cancels the cell's own task, as ipykernel does on Interrupt.
    "asyncio.timeout agenerate": """
        try:
            async with asyncio.timeout(1.0):
                await ollama_nb.agenerate('Talk.', 'stand-in')
        except TimeoutError:
            print('caught TimeoutError')
    """,
    "asyncio.timeout amap": """
        try:
            async with asyncio.timeout(1.0):
                await ollama_nb.amap('Talk {item}.', ['a', 'b'], 'stand-in', parallel=2)
        except TimeoutError:
            print('caught TimeoutError')
    """,
}


def _long_answers(server: StandInServer) -> None:
    server.configure(token_interval=0.05, tokens=500, num_parallel=4)


def _cell(body: str) -> str:
    return "import asyncio, ollama_nb\n" + textwrap.dedent(body).strip("\n")


def _all_closed_early(server: StandInServer, count: int, at_least: bool = False) -> None:
    """`count` generate requests (or at least `count`) reached the server, and the client
    closed each one before its answer was complete."""
    records = [r for r in server.requests if r.path == "/api/generate"]
    seen = [(r.body, r.chunks_sent) for r in records]
    assert len(records) >= count if at_least else len(records) == count, seen
    for record in records:
        assert record.wait_closed(5), record
        assert record.disconnected and not record.completed, record
        assert record.chunks_after_disconnect == 0


def _kernel_goes_on(kernel: KernelDriver) -> None:
    assert kernel.value("1 + 1") == 2
    kernel.ok("print('still here')")


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_cancelling_from_asyncio_is_a_cancelled_error_and_the_kernel_goes_on(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    python = tuple(kernel.value("__import__('sys').version_info[:2]"))
    for what, body in CANCELLING.items():
        if "asyncio.timeout" in what and python < (3, 11):
            continue  # new in 3.11
        server.reset()
        _long_answers(server)
        cell = kernel.run(_cell(body), timeout=30)
        assert cell.status == "ok", (what, cell.error_text())
        assert cell.stream_text().startswith("caught "), (what, cell.stream_text())
        assert "Error" in cell.stream_text()
        # A batch's second request may not have been sent yet when the cancel came.
        _all_closed_early(server, 1, at_least="amap" in what)
        if "agenerate" in what:  # its record replaced the live view, as for any end
            (record,) = visible_records(cell)
            assert "interrupted" in record
        _kernel_goes_on(kernel)


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_interrupting_a_gather_cancels_each_call_and_the_kernel_goes_on(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    _long_answers(server)
    cell = kernel.submit(
        _cell("""
        await asyncio.gather(
            ollama_nb.agenerate('A.', 'stand-in'),
            ollama_nb.amap('B {item}.', ['x', 'y'], 'stand-in', parallel=2),
        )
        """)
    )
    kernel.wait_for(
        lambda: sum(r.chunks_sent >= 3 for r in server.requests) == 3, 15, "three answers"
    )
    kernel.interrupt()
    kernel.finish(cell, timeout=15)
    # The calls ran in tasks that gather made: no KeyboardInterrupt from there, and what
    # reaches the cell is one line, not a traceback through the package and asyncio
    # (Python 3.10's gather raises a CancelledError of its own, with the usual traceback).
    assert cell.status == "error" and cell.ename == "CancelledError", cell.error_text()
    python = tuple(kernel.value("__import__('sys').version_info[:2]"))
    assert python < (3, 11) or cell.error()["traceback"] in (
        ["CancelledError: the request was cancelled; the response was closed"],
        ["CancelledError: the batch was cancelled; its responses are closed"],
    )
    _all_closed_early(server, 3)
    _kernel_goes_on(kernel)


def _interrupt_when_streaming(kernel: KernelDriver, server: StandInServer, code: str) -> Cell:
    cell = kernel.submit(code)
    record = server.wait_for_request("/api/generate", timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 3, 10, "some chunks")
    kernel.interrupt()
    return kernel.finish(cell, timeout=15)


@pytest.mark.parametrize("kernel_name", KERNELS)
@pytest.mark.parametrize("call", ["await ollama_nb.agenerate", "ollama_nb.generate"])
def test_interrupt_raises_request_interrupted_with_the_result_so_far(
    call: str, kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    _long_answers(server)
    code = _cell(f"""
        caught = None
        try:
            r = {call}('Talk.', 'stand-in')
        except ollama_nb.RequestInterrupted as exc:
            caught = exc
            raise
    """)
    cell = _interrupt_when_streaming(kernel, server, code)
    assert cell.error()["traceback"] == [INTERRUPTED], cell.error_text()  # Run All halts
    partial = kernel.value(
        "[type(caught.partial).__name__, caught.partial.done_reason, caught.partial.text]"
    )
    assert partial[:2] == ["OllamaResult", "interrupted"]
    assert partial[2].startswith("[stand-in]")
    (record,) = visible_records(cell)
    assert "interrupted" in record
    _all_closed_early(server, 1)
    _kernel_goes_on(kernel)


@pytest.mark.parametrize("kernel_name", KERNELS)
@pytest.mark.parametrize("call", ["await ollama_nb.amap", "ollama_nb.map"])
def test_interrupting_a_batch_keeps_what_it_did(
    call: str, kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    _long_answers(server)
    code = _cell(f"""
        caught = None
        try:
            r = {call}('Talk {{item}}.', list(range(6)), 'stand-in', parallel=2)
        except ollama_nb.RequestInterrupted as exc:
            caught = exc
            raise
    """)
    cell = _interrupt_when_streaming(kernel, server, code)
    assert cell.error()["traceback"] == [BATCH_INTERRUPTED], cell.error_text()
    assert kernel.value("type(caught.partial).__name__") == "OllamaBatch"
    assert kernel.value("caught.partial.counts()") == {"skipped": 4, "interrupted": 2}
    assert kernel.value("caught.partial[0].text").startswith("[stand-in]")
    _all_closed_early(server, 2)
    _kernel_goes_on(kernel)


def test_the_magic_still_raises_request_interrupted_into_its_cell(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """The `%%ollama` cell runs in the cell's own task too: its interrupt is unchanged,
    and asyncio.timeout in a later cell still works (the SIGINT counter is gone)."""
    _long_answers(server)
    cell = _interrupt_when_streaming(kernel, server, "%%ollama stand-in\nTalk.")
    assert cell.error()["traceback"] == [
        "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
    ]
    assert kernel.value("_ollama.done_reason") == "interrupted"
    server.reset()
    _long_answers(server)
    cell = kernel.run(_cell(CANCELLING["asyncio.timeout agenerate"]))
    assert cell.stream_text() == "caught TimeoutError\n", cell.error_text()


def test_a_script_cancelling_from_asyncio_goes_on_and_exits_0(server: StandInServer) -> None:
    _long_answers(server)
    done = run_script(
        """
        import asyncio, ollama_nb

        async def main():
            ollama_nb.embed('warm up: imports and the first connection', 'stand-in-embed')
            try:
                await asyncio.wait_for(ollama_nb.agenerate('Talk.', 'stand-in'), 0.5)
            except asyncio.TimeoutError:
                print('wait_for: TimeoutError')
            try:
                async with asyncio.timeout(0.5):
                    await ollama_nb.amap('Talk {item}.', ['a', 'b'], 'stand-in', parallel=2)
            except TimeoutError:
                print('timeout: TimeoutError')
            task = asyncio.ensure_future(ollama_nb.agenerate('Talk.', 'stand-in'))
            await asyncio.sleep(0.5)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                print('cancel: CancelledError')

        asyncio.run(main())
        print('after asyncio.run')
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "wait_for: TimeoutError",
        "timeout: TimeoutError",
        "cancel: CancelledError",
        "after asyncio.run",
    ]
    assert done.stderr == ""
    _all_closed_early(server, 3, at_least=True)


def test_a_second_interrupt_in_the_same_cell_is_an_interrupt_too(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """After an interrupt caught in the cell, the cell's task still counts as asked to
    cancel (Python 3.11+): the next interrupt, of a synchronous call, is still one."""
    _long_answers(server)
    cell = kernel.submit(
        _cell("""
        caught = []
        try:
            await ollama_nb.agenerate('One.', 'stand-in')
        except ollama_nb.RequestInterrupted as exc:
            caught.append(exc)
        ollama_nb.generate('Two.', 'stand-in')
        """)
    )
    for _ in range(2):
        record = server.wait_for_request("/api/generate", timeout=10)
        kernel.wait_for(lambda r=record: r.chunks_sent >= 3, 10, "some chunks")
        kernel.interrupt()
    kernel.finish(cell, timeout=15)
    assert cell.error()["traceback"] == [INTERRUPTED], cell.error_text()
    assert kernel.value("[e.partial.done_reason for e in caught]") == ["interrupted"]
    _all_closed_early(server, 2)
    _kernel_goes_on(kernel)
