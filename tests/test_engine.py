"""Against a real inference engine: llama.cpp (llama-cpp-python's server) on loopback,
serving a tiny random-weight model the tests write themselves (tests/engine/make_model.py).

What only a real engine shows: its own SSE framing and timing, that Stop makes *it* stop
(its log says the client went away, and it stops using CPU), a read timeout on a stream
that stalls mid-answer (through a proxy that stops forwarding), queueing of a batch,
embeddings and grammar-constrained `--format json`. The answers are random words: the
tests check shapes and outcomes, never the text. The cells of the tutorial
notebooks/11-other-servers.ipynb tagged `engine-test` run, as committed, in a kernel whose
only server is the engine.

tests/run builds the engine (see its "real inference engine" block); without it these
tests fail under CI and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from engine_server import EMBED_MODEL, MODEL, EngineServer, StallingProxy
from kernel_driver import WIDGET_MIME, Cell, KernelDriver
from support import assert_one_line_error, result, run_cell
from test_live_view import live_html, open_blocks, stop_button, words_of

from ollama_nb.testing import StandInServer


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


# The tutorial's cells tagged for this test, run as committed: its `/v1` host is built from
# $OLLAMA_HOST, which here names the engine (the only server the kernel can reach).
TUTORIAL = Path(__file__).resolve().parent.parent / "notebooks" / "11-other-servers.ipynb"
ENGINE_TAG = "engine-test"


def letters(text: str) -> list[str]:
    """The runs of letters of a text or of rendered HTML (tags dropped, entities read):
    what Markdown rendering keeps of random words."""
    return re.findall(r"[^\W\d_]+", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_the_tutorials_v1_cell_streams_from_the_engine(engine: EngineServer) -> None:
    cells = [
        c.source
        for c in nbformat.read(TUTORIAL, as_version=4).cells
        if ENGINE_TAG in c.metadata.get("tags", [])
    ]
    assert len(cells) == 3 and cells[1].startswith("%%ollama --host $v1"), cells
    env = {"OLLAMA_HOST": f"http://127.0.0.1:{engine.port}", "OLLAMA_MODEL": MODEL}
    kernel = KernelDriver(env=env)
    try:
        kernel.ok("%load_ext ollama_nb")
        kernel.ok(cells[0])
        assert kernel.value("v1") == engine.url
        cell = kernel.ok_drawn(cells[1], timeout=60)  # drawn, as in a front end
        # Streamed: the live view showed the answer's first words before the record.
        shown = letters(live_html(cell))
        record_at = next(
            m.at
            for m in cell.messages
            if m.type == "display_data" and WIDGET_MIME not in m.content["data"]
        )
        assert [m for m in open_blocks(cell.messages) if m.at < record_at], "no live text"
        r = result(kernel)
        assert r["error"] is None and r["model"] == MODEL and r["done_reason"] == "length"
        # The answer's start (its last word may have been cut mid-way: "red" of "redfn").
        final = letters(r["text"])[: len(shown)]
        assert shown and final[:-1] == shown[:-1] and final[-1].startswith(shown[-1])
        (record,) = cell.records()
        plain = record["text/plain"]
        assert f"{MODEL} · length ·" in plain, plain
        assert " ".join(r["text"].split()) in " ".join(plain.split()), plain
        summary = kernel.ok(cells[2])
        (value,) = [
            m.content["data"]["text/plain"] for m in summary.outputs() if m.type == "execute_result"
        ]
        assert value == f"({MODEL!r}, 'length', True)"
    finally:
        kernel.close()


def test_the_stand_in_forwards_plain_answers_to_the_engine(engine: EngineServer) -> None:
    """Forward mode (`tests/run --forward`): the engine's tokens as Ollama chunks."""

    def chat(
        url: str, options: dict[str, object], lines: int | None = None, history: str = ""
    ) -> list[dict]:
        earlier = [{"role": "user", "content": "Go."}, {"role": "assistant", "content": history}]
        messages = (earlier if history else []) + [{"role": "user", "content": "Hi"}]
        body = {"model": "stand-in", "messages": messages}
        with httpx.stream(
            "POST", f"{url}/api/chat", json={**body, "options": options}, timeout=30
        ) as response:
            assert response.status_code == 200, response.read()
            got = []
            for line in response.iter_lines():
                got.append(json.loads(line))
                if len(got) == lines:
                    break  # and hang up mid-answer
        return got

    with StandInServer(forward_to=engine.url, forward_model=MODEL) as server:
        *chunks, final = chat(server.url, {"num_predict": 12, "temperature": 0})
        text = "".join(c["message"]["content"] for c in chunks)
        assert final["done"] and final["done_reason"] == "length", final
        assert final["eval_count"] == len(chunks) <= 12 and final["eval_duration"] > 0
        direct = httpx.post(
            f"{engine.url}/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 12,
                "temperature": 0,
            },
            timeout=30,
        ).json()["choices"][0]["message"]["content"]
        assert text == direct and "[stand-in]" not in text
        assert server.last.forwarded
        # No num_predict: the stand-in's answer length, ended as its own answers end.
        *chunks, final = chat(server.url, {})
        assert final["done_reason"] == "stop" and 0 < final["eval_count"] <= 24
        # A knob set: the deterministic path, as the test that set it expects.
        *chunks, final = chat(server.url, {"standin_reply": "Fixed."})
        assert "".join(c["message"]["content"] for c in chunks) == "Fixed."
        assert not server.last.forwarded
        # A history far beyond the engine's context (2048 tokens) is cut, as Ollama cuts it.
        *chunks, final = chat(server.url, {}, history="word " * 100_000)
        assert final["done_reason"] == "stop" and server.last.forwarded
        # Hanging up mid-answer cancels the engine's request.
        before = len(engine.log())
        assert len(chat(server.url, {"num_predict": 1900}, lines=3)) == 3
        engine.wait_for_log("Disconnected", before)


def test_a_prompt_beyond_the_context_is_one_line(
    kernel: KernelDriver, engine: EngineServer
) -> None:
    # llama-cpp-python answers 200, then ends the stream with no event: the reason (the
    # prompt does not fit its 2048-token context) is only in its log.
    kernel.ok("long_prompt = 'word ' * 3000")
    cell = run_cell(kernel, f"{MODEL} --host {engine.url}", "{long_prompt}")
    assert_one_line_error(cell, "OllamaResponseError", "without a finish_reason", "its log")
    assert result(kernel)["done_reason"] == "error"
    after = run_cell(kernel, f"{MODEL} --host {engine.url} -o num_predict=4")
    assert after.status == "ok", after.error_text()
