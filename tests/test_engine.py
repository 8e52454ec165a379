"""Against a real inference engine: llama.cpp (llama-cpp-python's server) on loopback,
serving a tiny random-weight model the tests write themselves (tests/engine/make_model.py).

What only a real engine shows: its own SSE framing and timing, that Stop makes *it* stop
(its log says the client went away, and it stops using CPU), a read timeout on a stream
that stalls mid-answer (through a proxy that stops forwarding), queueing of a batch,
embeddings and grammar-constrained `--format json`. The answers are random words: the
tests check shapes and outcomes, never the text. One notebook cell (the README's "Other
servers" usage) runs headless, as a tutorial does, and its saved record is checked.

tests/run builds the engine (see its "real inference engine" block); without it these
tests fail under CI and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from engine_server import EMBED_MODEL, MODEL, EngineServer, StallingProxy
from kernel_driver import WIDGET_MIME, Cell, KernelDriver
from nbclient import NotebookClient
from support import assert_one_line_error, result, run_cell
from test_live_view import open_blocks, stop_button, words_of


def wait_until_streaming(kernel: KernelDriver, cell: Cell, seconds: float) -> None:
    """Show the cell's live view (as a front end would) and wait until its elapsed counter
    reaches `seconds` and the answer's first words are shown: the engine is generating (its
    prompt processing can take longer than `seconds` on a loaded machine)."""
    label = kernel.wait_for(lambda: cell.widget(value="0.0 s"), 15, "the elapsed label")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 15, "the live view")
    kernel.show_view(root.content["comm_id"])  # drawn: the counter ticks

    def counted() -> bool:
        updates = cell.updates_of(label.content["comm_id"])
        shown = [m.content["data"].get("state", {}).get("value", "") for m in updates]
        return any(v.endswith(" s") and float(v.split()[0]) >= seconds for v in shown)

    kernel.wait_for(counted, 15, f"{seconds:g} s of answer")

    def words_shown() -> list[str]:
        since = [m for m in kernel.messages if m.at >= cell.sent_at]
        blocks = [
            m.content["data"]["text/html"]
            for m in since
            if m.type == "display_data" and set(m.content["data"]) == {"text/html"}
        ]
        last_open = [m.content["data"]["state"]["value"] for m in open_blocks(since)[-1:]]
        return words_of("".join(blocks + last_open))

    kernel.wait_for(words_shown, 30, "the answer's first words")


def test_a_streamed_answer(kernel: KernelDriver, engine: EngineServer) -> None:
    cell = run_cell(kernel, f"{MODEL} --host {engine.url} -o num_predict=24 -o temperature=0")
    assert cell.status == "ok", cell.error_text()
    r = result(kernel)
    assert r["text"].strip() and r["done_reason"] == "length" and r["error"] is None
    assert r["ttft"] is not None and r["ttft"] <= r["elapsed"]
    (record,) = cell.records()
    assert "· length ·" in record["text/plain"]
    again = run_cell(kernel, f"{MODEL} --host {engine.url} -o num_predict=24 -o temperature=0")
    assert again.status == "ok" and result(kernel)["text"] == r["text"]  # temperature 0


def test_stop_makes_the_engine_stop(kernel: KernelDriver, engine: EngineServer) -> None:
    before = len(engine.log())
    # ~1900 tokens: seconds of work for the engine, far more than the test waits.
    cell = kernel.submit(f"%%ollama {MODEL} --host {engine.url} -o num_predict=1900\nTalk.")
    wait_until_streaming(kernel, cell, 0.5)
    kernel.click(stop_button(kernel, cell))
    kernel.finish(cell, timeout=10)
    assert cell.status == "ok", cell.error_text()
    r = result(kernel)
    assert r["done_reason"] == "stopped" and r["error"] is None and r["text"].strip()
    engine.wait_for_log("Disconnected", before)  # the engine saw the client go
    idle_from = engine.cpu_seconds()
    time.sleep(1.0)
    assert engine.cpu_seconds() - idle_from < 0.3  # and stopped generating
    after = run_cell(kernel, f"{MODEL} --host {engine.url} -o num_predict=4")
    assert after.status == "ok", after.error_text()


def test_read_timeout_on_a_stalled_stream(kernel: KernelDriver, engine: EngineServer) -> None:
    proxy = StallingProxy(engine.port, events=4)
    try:
        before = len(engine.log())
        line = f"{MODEL} --host {proxy.url} --read-timeout 1 -o num_predict=1900"
        cell = run_cell(kernel, line, timeout=30)
        assert_one_line_error(cell, "OllamaTimeoutError", "read timeout", "after")
        r = result(kernel)
        assert r["kind"] == "read" and r["done_reason"] == "timeout" and r["text"]
        assert proxy.client_closed.wait(5)  # the client hung up...
        engine.wait_for_log("Disconnected", before)  # ...and the engine saw it
    finally:
        proxy.close()


def test_a_batch_of_50_at_parallel_4(kernel: KernelDriver, engine: EngineServer) -> None:
    kernel.ok("numbers = list(range(50))")
    cell = kernel.run(
        f"%%ollama {MODEL} --host {engine.url} --each numbers --parallel 4 -o num_predict=6\n"
        "Count {item}.",
        180,
    )
    assert cell.status == "ok", cell.error_text()
    assert kernel.value("[r.done_reason for r in _ollama]") == ["length"] * 50
    assert kernel.value("sum(1 for r in _ollama if r.text.strip())") == 50


def test_embeddings(kernel: KernelDriver, engine: EngineServer) -> None:
    vectors = kernel.value(
        f"__import__('ollama_nb').embed(['red cat', 'blue dog', 'red cat'], {EMBED_MODEL!r},"
        f" host={engine.url!r}, display=False)"
    )
    assert len(vectors) == 3 and len(vectors[0]) == 64
    assert vectors[0] == pytest.approx(vectors[2], rel=1e-4)  # the same text
    assert vectors[0] != pytest.approx(vectors[1], rel=1e-4)


def test_format_json_is_grammar_constrained(kernel: KernelDriver, engine: EngineServer) -> None:
    cell = run_cell(kernel, f"{MODEL} --host {engine.url} --format json -o num_predict=40")
    r = result(kernel)
    assert r["text"].lstrip().startswith("{"), r["text"]
    if cell.status != "ok":  # a random model may not close the object in 40 tokens
        assert_one_line_error(cell, "OllamaResponseError", "not valid JSON", "text is kept")
    else:
        assert isinstance(r["json"], dict)


def test_interrupt_closes_the_response(kernel: KernelDriver, engine: EngineServer) -> None:
    before = len(engine.log())
    cell = kernel.submit(f"%%ollama {MODEL} --host {engine.url} -o num_predict=1900\nTalk.")
    wait_until_streaming(kernel, cell, 0.3)
    kernel.interrupt()
    kernel.finish(cell, timeout=15)
    assert cell.ename == "RequestInterrupted", cell.error_text()
    assert len(cell.error()["traceback"]) == 1
    assert result(kernel)["done_reason"] == "interrupted"
    engine.wait_for_log("Disconnected", before)


# The README's "Other servers" usage, as a notebook: run headless (nbclient, as nbval and
# papermill run tutorials) in this venv's kernel, then saved and read back as a file.
OTHER_SERVERS_CELLS = [
    "%load_ext ollama_nb\nengine = {url!r}",
    f"%%ollama {MODEL} --host $engine -o num_predict=24 -o temperature=0\nWhy is the sky blue?",
]


def test_a_notebook_cell_saves_the_streamed_answer(engine: EngineServer, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cells = [OTHER_SERVERS_CELLS[0].format(url=engine.url), OTHER_SERVERS_CELLS[1]]
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    # No other server answers: what the cell shows can only come from --host.
    env = {"OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_MODEL": ""}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)  # the kernel inherits them
        NotebookClient(nb, timeout=60, kernel_name="python3").execute(cwd=str(tmp_path))
    saved = tmp_path / "other-servers.ipynb"
    nbformat.write(nb, saved)
    raw = json.loads(saved.read_text())
    assert "widgets" not in raw["metadata"], raw["metadata"]
    outputs = raw["cells"][1]["outputs"]
    assert {o["output_type"] for o in outputs} == {"display_data"}, outputs
    assert not [o for o in outputs if WIDGET_MIME in o["data"]], outputs
    (data,) = [o["data"] for o in outputs if o["data"]]  # the record (the view left {})
    assert "text/html" in data, sorted(data)
    plain = "".join(data["text/plain"])
    assert "· length ·" in plain, plain  # the status line: ended on max_tokens
    # The same request straight to the engine (temperature 0): the text the record holds.
    answer = httpx.post(
        f"{engine.url}/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "max_tokens": 24,
            "temperature": 0,
        },
        timeout=30,
    ).json()["choices"][0]["message"]["content"]
    assert answer.strip() and " ".join(answer.split()) in " ".join(plain.split()), plain
