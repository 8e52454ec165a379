"""`%%ollama` among the rest of a notebook: under `%%time` / `%%capture`, several requests
from one cell, two interrupts in a row on the synchronous path, `--chat --background`,
input that cannot be sent, and what a headless run saves (nbclient, then nbval on the
saved file). Real kernels, the stand-in on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pexpect
import pytest
from kernel_driver import WIDGET_MIME, Cell, KernelDriver
from nbclient import NotebookClient
from support import REPLY, SHARED_WIDGETS, result
from test_terminal import run as run_in_terminal

from ollama_nb.testing import StandInServer

SLOW = "-o standin_token_interval=0.05 -o standin_tokens=2000"
INTERRUPTED = "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
SANITIZE = Path(__file__).with_name("nbval-sanitize.cfg")


def comm_balance(kernel: KernelDriver, cells: list[Cell]) -> tuple[int, int]:
    """(widget comms these cells opened, how many of those were closed), but for the
    layouts and styles that all views share (made by the kernel's first view, kept open)."""
    shared = set(kernel.value(SHARED_WIDGETS))
    opened = {m.content["comm_id"] for c in cells for m in c.comm_opens()} - shared
    closed = {
        m.content["comm_id"]
        for m in kernel.messages
        if m.type == "comm_close" and m.content["comm_id"] in opened
    }
    return len(opened), len(closed)


# -- %%time / %%capture above %%ollama ---------------------------------------------------


@pytest.mark.parametrize("kernel_name", ["kernel", "k6_kernel"])
def test_time_above_ollama_sends_times_and_records(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    server.configure(reply=REPLY)
    cell = kernel.run("%%time\n%%ollama stand-in\nSay hello.")
    assert cell.status == "ok", cell.error_text()
    assert server.wait_for_request("/api/generate", timeout=5).body["prompt"] == "Say hello."
    assert "Wall time:" in cell.stream_text()
    (record,) = cell.records()
    assert REPLY in record["text/plain"]
    assert result(kernel)["text"] == REPLY


def test_capture_above_ollama_captures_the_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = kernel.run("%%capture captured\n%%ollama stand-in\nSay hello.\n")
    assert cell.status == "ok", cell.error_text()
    assert server.wait_for_request("/api/generate", timeout=5).completed
    assert cell.displays() == [] and cell.stream_text() == ""  # all of it captured
    outputs = kernel.value("[o.data for o in captured.outputs]")
    assert len(outputs) == 1 and REPLY in outputs[0]["text/plain"]
    assert WIDGET_MIME not in outputs[0]
    assert result(kernel)["text"] == REPLY
    shown = kernel.run("captured.show()")
    (record,) = shown.records()
    assert REPLY in record["text/plain"]


def test_capture_above_a_batch_captures_its_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("items = ['a', 'b', 'c']")
    cell = kernel.run("%%capture captured\n%%ollama stand-in --each items\nSay {item}.\n")
    assert cell.status == "ok", cell.error_text()
    assert len(server.requests) == 3
    assert cell.displays() == [] and cell.stream_text() == ""  # all of it captured
    (record,) = kernel.value("[o.data for o in captured.outputs]")
    assert set(record) == {"text/html", "text/plain"} and "3 answers" in record["text/plain"]
    assert kernel.value("_ollama.counts()") == {"stop": 3}


def test_capture_above_a_failing_request_shows_one_line(kernel: KernelDriver) -> None:
    cell = kernel.run("%%capture\n%%ollama stand-in --host 127.0.0.1:9 --retries 0\nHi.")
    assert "OllamaConnectionError" in cell.error_text()
    assert "Traceback" not in cell.error_text()
    assert result(kernel)["done_reason"] == "error"


# -- several requests from one cell -------------------------------------------------------


def test_a_loop_of_requests_keeps_one_record_each(
    kernel: KernelDriver, server: StandInServer
) -> None:
    code = (
        "for word in ['one', 'two', 'three']:\n"
        "    get_ipython().run_cell_magic('ollama', 'stand-in', 'Say ' + word)\n"
        "    print('after', word)\n"
    )
    cell = kernel.run(code)
    assert cell.status == "ok", cell.error_text()
    assert [r.body["prompt"] for r in server.requests] == ["Say one", "Say two", "Say three"]
    assert not [m for m in cell.messages if m.type == "clear_output"]
    records = cell.records()
    assert len(records) == 3
    assert cell.stream_text() == "after one\nafter two\nafter three\n"
    # In order, each between its own prints: record, print, record, print, ...
    kinds = [
        "record" if m.type == "display_data" and WIDGET_MIME not in m.content["data"] else "print"
        for m in cell.outputs()
        if m.type in ("stream", "display_data")
        and m.content.get("data") != {}
        and not (m.type == "display_data" and WIDGET_MIME in m.content["data"])
    ]
    assert kinds == ["record", "print"] * 3
    opened, closed = comm_balance(kernel, [cell])
    assert opened == closed > 0


# -- two interrupts a few ms apart on the synchronous path --------------------------------


def test_two_quick_interrupts_with_autoawait_off(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("%autoawait off")
    try:
        cells = []
        for _ in range(3):
            cell = kernel.submit(f"%%ollama stand-in {SLOW}\nTalk for a long time.")
            record = server.wait_for_request("/api/generate", timeout=10)
            kernel.wait_for(lambda r=record: r.chunks_sent >= 3, 10, "three chunks")
            kernel.interrupt()
            time.sleep(0.005)
            kernel.interrupt()
            kernel.finish(cell, timeout=15)
            assert record.wait_closed(5) and record.chunks_after_disconnect == 0
            assert cell.status == "error"  # re-raised once, as one line
            assert cell.error()["traceback"] == [INTERRUPTED]
            (bundle,) = cell.records()
            assert "· interrupted ·" in bundle["text/plain"]
            cells.append(cell)
        assert result(kernel)["done_reason"] == "interrupted"
        opened, closed = comm_balance(kernel, cells)
        assert opened == closed > 0, (opened, closed)
        kernel.ok("x = 1")  # the kernel is fine afterwards
    finally:
        kernel.ok("%autoawait on")


def test_two_quick_ctrl_c_in_terminal_ipython(
    ipython: pexpect.spawn, server: StandInServer
) -> None:
    for _ in range(2):
        server.configure(token_interval=0.05, tokens=2000)
        run_in_terminal(ipython, "stand-in", "Talk for a long time.")
        record = server.wait_for_request("/api/generate", timeout=10)
        ipython.expect(r"\[stand-in\] ")  # text is streaming
        os.kill(ipython.pid, signal.SIGINT)
        time.sleep(0.005)
        os.kill(ipython.pid, signal.SIGINT)
        ipython.expect("stand-in · interrupted · ")
        ipython.expect(INTERRUPTED.replace(".", r"\."))
        ipython.expect(r"In \[\d+\]: ")
        assert "Traceback" not in ipython.before and "Event loop is closed" not in ipython.before
        assert record.wait_closed(5) and record.chunks_after_disconnect == 0
    ipython.sendline("print(_ollama.done_reason)")
    ipython.expect("interrupted")


# -- --chat --background ------------------------------------------------------------------


def test_background_chat_turns_keep_the_order_asked_and_reset_drops_those_in_flight(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("%ollama reset")
    server.configure(num_parallel=2)  # both turns stream at once, as on a server that can
    slow, fast = "-o standin_token_interval=0.2 -o standin_tokens=10", "-o standin_tokens=3"
    kernel.ok_drawn(f"%%ollama stand-in --chat --background {slow}\nFirst, slowly.")
    kernel.ok_drawn(f"%%ollama stand-in --chat --background {fast}\nSecond, quickly.")
    first = server.wait_for_request("/api/chat", timeout=5)
    second = server.wait_for_request("/api/chat", timeout=5)
    assert second.wait_closed(10) and first.wait_closed(10)
    assert first.finished_at > second.finished_at  # finished out of order...
    turns = "get_ipython().magics_manager.registry['OllamaMagics'].conversation.turns"
    kernel.wait_for(
        lambda: kernel.value(f"[t.done_reason for t in {turns}]") == ["stop", "stop"],
        10,
        "both turns recorded",
    )
    prompts = kernel.value(f"[t.prompt for t in {turns}]")
    assert prompts == ["First, slowly.", "Second, quickly."]  # ...recorded as asked
    # A reset while a turn streams: that turn never lands in the new conversation.
    kernel.ok_drawn(f"%%ollama stand-in --chat --background {slow}\nThird, in flight.")
    third = server.wait_for_request("/api/chat", timeout=5)
    kernel.ok("%ollama reset")
    assert third.wait_closed(10)
    kernel.ok("%%ollama stand-in --chat -o standin_tokens=2\nFourth, after the reset.")
    fourth = server.wait_for_request("/api/chat", timeout=5)
    assert [m["content"] for m in fourth.body["messages"]] == ["Fourth, after the reset."]
    assert kernel.value(f"[t.prompt for t in {turns}]") == ["Fourth, after the reset."]


# -- input that cannot be sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "line", "body", "words"),
    [
        ("bad = 'caf\\udce9'", "stand-in", "Say {bad}", ("lone surrogate", "U+DCE9")),
        ("schema = {'type': 'number', 'maximum': float('inf')}", "stand-in --format schema",
         "Hi.", ("--format", "inf")),
        ("schema = {'type': 'number', 'minimum': float('nan')}", "stand-in --format schema",
         "Hi.", ("--format", "nan")),
    ],
)  # fmt: skip
def test_unsendable_input_is_a_usage_error_before_anything_is_drawn(
    kernel: KernelDriver, server: StandInServer, setup: str, line: str, body: str,
    words: tuple[str, ...],
) -> None:  # fmt: skip
    if setup:
        kernel.ok(setup)
    kernel.ok("_ollama = None")
    cell = kernel.run(f"%%ollama {line}\n{body}")
    assert cell.status == "error"
    text = cell.error_text()
    assert "UsageError" in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    for word in words:
        assert word in text, text
    assert cell.displays() == [] and cell.comm_opens() == []
    assert server.requests == []
    assert kernel.value("_ollama is None")


# -- what a headless run saves -------------------------------------------------------------


def run_headless(notebook: Path, server: StandInServer, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3").execute(cwd=str(cwd))
    nbformat.write(nb, notebook)
    return nb


def test_headless_run_saves_every_record_and_no_widget_state(
    standin_server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin_server.reset()
    monkeypatch.setenv("OLLAMA_HOST", standin_server.url)  # the kernel inherits it
    monkeypatch.setenv("OLLAMA_MODEL", "stand-in")
    nb = nbformat.v4.new_notebook()
    loop = (
        "for word in ['alpha', 'beta']:\n"
        "    get_ipython().run_cell_magic('ollama', '-o standin_reply=\"Answer ' + word"
        " + '.\"', 'Say ' + word)"
    )
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext ollama_nb"),
        nbformat.v4.new_code_cell("%%ollama -o standin_reply='Plain answer.'\nHi."),
        nbformat.v4.new_code_cell(loop),
        nbformat.v4.new_code_cell(
            "%%ollama --background -o standin_reply='Background answer.'"
            " -o standin_token_interval=0.05\nTake your time."
        ),
        # Headless, no view is drawn: the background cell ends with its answer (see
        # test_headless_saves.py for one that is last or followed by synchronous cells).
        nbformat.v4.new_code_cell("import asyncio\nawait asyncio.sleep(2)"),
        nbformat.v4.new_code_cell("%%time\n%%ollama -o standin_reply='Timed answer.'\nHi."),
    ]
    saved = tmp_path / "run.ipynb"
    nbformat.write(nb, saved)
    run_headless(saved, standin_server, tmp_path)
    raw = json.loads(saved.read_text())
    # No widget state saved at all: the live views were never drawn.
    assert "widgets" not in raw["metadata"], raw["metadata"]
    texts = []
    for cell in raw["cells"]:
        for output in cell["outputs"]:
            data = output.get("data", {})
            assert WIDGET_MIME not in data, cell["source"]
        texts.append(
            "".join(
                "".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", ""))
                for o in cell["outputs"]
            )
        )
    assert "Plain answer." in texts[1]
    assert texts[2].index("Answer alpha.") < texts[2].index("Answer beta.")
    assert "Background answer." in texts[3]
    assert "Timed answer." in texts[5] and "Wall time" in texts[5]

    # nbval on the saved file: what it collects equals what the file holds (the
    # background cell's record too: it arrives while its cell runs).
    nb = nbformat.read(saved, as_version=4)
    nb.cells[5].metadata["tags"] = ["nbval-ignore-output"]  # %%time's timings vary
    nbformat.write(nb, saved)
    env = {**os.environ, "OLLAMA_HOST": standin_server.url, "OLLAMA_MODEL": "stand-in"}
    standin_server.reset()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(saved)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "6 passed" in run.stdout, run.stdout[-1000:]
