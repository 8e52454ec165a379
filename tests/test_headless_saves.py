"""A headless run (nbclient, as nbval and papermill use it) saves every answer and no
widget state, whatever the cell kind: a batch, `embed`'s progress, a pull, `generate` in
a plain cell, and `--background` cells that are last or followed only by synchronous
cells (no later cell's messages can carry their record there)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from kernel_driver import WIDGET_MIME, KernelDriver
from nbclient import NotebookClient
from support import result

from ollama_nb.testing import StandInServer

CELLS = [
    "%load_ext ollama_nb\nitems = ['one', 'two', 'three']",
    "%%ollama --each items -o standin_reply='Batch answer.'\nSay {item}.",
    "import ollama_nb\n"
    "vectors = ollama_nb.embed(['a', 'b', 'c', 'd'], model='stand-in-embed', batch_size=1)",
    "%ollama pull stand-in-extra",
    "r = ollama_nb.generate('Hi.', model='stand-in', options={'standin_reply': 'Sync answer.'})",
    "%%ollama --background -o standin_reply='First background answer.'"
    " -o standin_token_interval=0.05\nTake your time.",
    "import time\ntime.sleep(0.2)",  # synchronous: the loop does not run meanwhile
    "%%ollama --background -o standin_reply='Last background answer.'"
    " -o standin_token_interval=0.05\nTake your time.",
]
# What each cell's saved outputs must hold.
EXPECTED = {
    1: "Batch answer.",
    2: "embedded 4 texts",
    3: "pulled stand-in-extra",
    4: "Sync answer.",
    5: "First background answer.",
    7: "Last background answer.",
}


def saved_text(cell: dict) -> str:
    parts = []
    for output in cell["outputs"]:
        data = output.get("data", {})
        assert WIDGET_MIME not in data, cell["source"]  # never only a widget reference
        parts.append("".join(data.get("text/plain", "")) + "".join(output.get("text", "")))
    return "".join(parts)


def test_headless_run_saves_every_answer_and_no_widget_state(
    standin_server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin_server.reset()
    monkeypatch.setenv("OLLAMA_HOST", standin_server.url)  # the kernel inherits it
    monkeypatch.setenv("OLLAMA_MODEL", "stand-in")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute(cwd=str(tmp_path))
    saved = tmp_path / "run.ipynb"
    nbformat.write(nb, saved)
    raw = json.loads(saved.read_text())
    for index, cell in enumerate(raw["cells"]):
        assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell["outputs"]
        text = saved_text(cell)
        if index in EXPECTED:
            assert EXPECTED[index] in text, (cell["source"], text)
    assert "widgets" not in raw["metadata"], raw["metadata"]


def test_interrupting_an_undrawn_background_cell_is_one_line(
    kernel: KernelDriver, server: StandInServer
) -> None:
    # No front end draws the view (as headless): the cell waits for the answer, so an
    # interrupt reaches it, closes the response and says so once.
    server.configure(token_interval=0.1, tokens=500)
    cell = kernel.submit("%%ollama stand-in --background\nTalk for a long time.")
    record = server.wait_for_request("/api/generate", timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 3, 10, "three chunks")
    kernel.interrupt()
    kernel.finish(cell)
    assert record.wait_closed(5) and not record.completed
    assert cell.error()["traceback"] == [
        "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
    ]
    assert cell.stream_text("stderr") == ""  # said once, not again by the background task
    assert result(kernel)["done_reason"] == "interrupted"
    assert kernel.value("1 + 1") == 2
