"""OpenAI-compatible servers behind the same magic (issue 28), against the stand-in's /v1.

A host URL whose path ends in /v1 speaks OpenAI's protocol (`--api` says so explicitly):
the live view, Stop, records, chat, batches, embeddings, `%ollama models` and one-line
errors work as with Ollama's API; commands without a counterpart say so and send
nothing. The fault matrix (timeouts, retries, drops, malformed events, HTTP errors) runs
through /v1 too: tests/test_faults.py, endpoint "openai". Unit tests of the SSE framing
and of the mapping are at the end.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from kernel_driver import KernelDriver
from raw_server import RawRequest, RawServer, response
from support import REPLY, assert_kept_what_arrived, assert_one_line_error, result, run_cell
from test_live_view import SLOW, stop_button

import ollama_nb
from ollama_nb._exceptions import OllamaModelNotFoundError, OllamaResponseError
from ollama_nb._openai import OPENAI as OPENAI_PROTOCOL
from ollama_nb._openai import EventChunks, chat_body, data_url, error_fields
from ollama_nb._protocol import OLLAMA, protocol_for
from ollama_nb._sse import EventDecoder
from ollama_nb.testing import StandInServer

CHAT = "/v1/chat/completions"
SECRET = "sk-openai-test-key-0123456789abcdef"


def v1(server: StandInServer) -> str:
    return f"{server.url}/v1"


def assert_usage_line(cell: Any, *words: str) -> None:
    """A UsageError: one line on stderr, no traceback."""
    assert cell.ename == "UsageError"
    text = cell.error_text().strip()
    assert "\n" not in text and "Traceback" not in text, text
    for word in words:
        assert word in text, text


# -- the magic against the stand-in's /v1 -------------------------------------------------


def test_stream_shows_the_live_view_and_leaves_the_same_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = run_cell(kernel, f"stand-in --host {v1(server)} -o temperature=0 -o num_predict=50")
    assert cell.status == "ok", cell.error_text()
    assert cell.widget(description="Stop") is not None  # the same live view
    (record,) = cell.records()
    assert REPLY in record["text/plain"] and "· stop ·" in record["text/plain"]
    r = result(kernel)
    assert r["text"] == REPLY and r["done_reason"] == "stop" and r["error"] is None
    assert r["eval_count"] == 9 and r["prompt_eval_count"] >= 1  # from usage
    assert r["tokens_per_second"] > 0  # as the client saw the tokens arrive
    sent = server.last
    assert sent.path == CHAT and sent.completed
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert sent.body["temperature"] == 0 and sent.body["max_tokens"] == 50
    assert "options" not in sent.body and "num_predict" not in sent.body


def test_stop_closes_the_response(kernel: KernelDriver, server: StandInServer) -> None:
    cell = kernel.submit(f"%%ollama stand-in --host {v1(server)} {SLOW}\nTalk for long.")
    record = server.wait_for_request(CHAT, timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 5, 10, "five chunks")
    clicked = kernel.click(stop_button(kernel, cell))
    kernel.finish(cell, timeout=10)
    assert record.wait_closed(5)
    assert cell.status == "ok"
    assert record.disconnected_at is not None and record.disconnected_at - clicked < 0.5
    assert record.chunks_after_disconnect == 0 and not record.completed
    r = result(kernel)
    assert r["done_reason"] == "stopped" and r["stopped"] and r["error"] is None
    assert_kept_what_arrived(r["text"], record)


def test_format_json_and_a_schema(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, f"stand-in --host {v1(server)} --format json", "Give JSON.")
    assert cell.status == "ok", cell.error_text()
    assert server.last.body["response_format"] == {"type": "json_object"}
    assert kernel.value("_ollama.json['stand_in']") is True
    kernel.ok("person = {'title': 'Person', 'type': 'object', 'properties': {'name':"
              " {'type': 'string'}}, 'required': ['name']}")  # fmt: skip
    cell = run_cell(kernel, f"stand-in --host {v1(server)} --format person", "Who?")
    assert cell.status == "ok", cell.error_text()
    fmt = server.last.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person"
    assert fmt["json_schema"]["schema"]["required"] == ["name"]
    assert isinstance(kernel.value("_ollama.json['name']"), str)


def test_chat_sends_the_conversation_as_messages(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("%ollama reset")
    try:
        line = f"stand-in --host {v1(server)} --chat --system 'Be brief.'"
        assert run_cell(kernel, line, "First question.").status == "ok"
        first = result(kernel)["text"]
        assert run_cell(kernel, line, "Second question.").status == "ok"
        messages = server.last.body["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert messages[0]["content"] == "Be brief." and messages[2]["content"] == first
        assert messages[3]["content"] == "Second question."
    finally:
        kernel.ok("%ollama reset")


def test_thinking_and_reasoning_effort(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, f"stand-in-think --host {v1(server)} --think-level low")
    assert cell.status == "ok", cell.error_text()
    assert server.last.body["reasoning_effort"] == "low"
    r = result(kernel)
    assert r["thinking"].startswith("[stand-in thinking]") and r["text"].startswith("[stand-in]")


def test_a_batch_with_parallel_4(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(num_parallel=4, token_interval=0.01, tokens=10)
    kernel.ok("cities = ['Paris', 'Oslo', 'Lima', 'Rome', 'Kyiv', 'Quito', 'Hanoi', 'Accra']")
    cell = kernel.run(
        f"%%ollama stand-in --host {v1(server)} --each cities --parallel 4\nAbout {{item}}.", 60
    )
    assert cell.status == "ok", cell.error_text()
    assert kernel.value("[r.done_reason for r in _ollama]") == ["stop"] * 8
    assert kernel.value("all(r.text.startswith('[stand-in]') for r in _ollama)")
    sent = [r for r in server.requests if r.path == CHAT]
    assert len(sent) == 8
    assert sorted(r.body["messages"][0]["content"] for r in sent) == sorted(
        f"About {c}." for c in ["Paris", "Oslo", "Lima", "Rome", "Kyiv", "Quito", "Hanoi", "Accra"]
    )
    overlap = max(
        sum(o.started_at <= r.started_at < (o.finished_at or 0) for o in sent) for r in sent
    )
    assert overlap >= 2  # several in flight at once


def test_models_lists_the_servers_models(kernel: KernelDriver, server: StandInServer) -> None:
    cell = kernel.run(f"%config OllamaMagics.host = {v1(server)!r}\n%ollama models")
    try:
        assert cell.status == "ok", cell.error_text()
        assert server.last.path == "/v1/models"
        shown = json.dumps([m.content for m in cell.outputs()])
        assert "stand-in-think" in shown and "stand-in-embed" in shown
        # /v1/models says names only: the table has no columns of blanks or "?".
        (table,) = [m.content["data"]["text/plain"] for m in cell.outputs()]
        assert table.splitlines()[0].split() == ["name"] and "?" not in table
    finally:
        kernel.ok("%config OllamaMagics.host = None")


@pytest.mark.parametrize("command", ["ps", "pull stand-in", "show stand-in", "unload stand-in"])
def test_commands_without_a_counterpart_say_so_and_send_nothing(
    command: str, kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok(f"%config OllamaMagics.host = {v1(server)!r}")
    try:
        cell = kernel.run(f"%ollama {command}")
        assert_usage_line(cell, "OpenAI-compatible server", "nothing was sent")
        assert server.requests == []
    finally:
        kernel.ok("%config OllamaMagics.host = None")


def test_version_names_the_kind_of_server_and_sends_nothing(
    kernel: KernelDriver, server: StandInServer
) -> None:
    cell = kernel.run(f"%config OllamaMagics.host = {v1(server)!r}\n%ollama version")
    try:
        assert cell.status == "ok", cell.error_text()
        shown = json.dumps([m.content for m in cell.outputs()])
        assert "OpenAI-compatible server at" in shown and v1(server) in shown
        assert server.requests == []
    finally:
        kernel.ok("%config OllamaMagics.host = None")


def test_keep_alive_is_refused_in_one_line(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, f"stand-in --host {v1(server)} --keep-alive 10m")
    assert_usage_line(cell, "--keep-alive", "OpenAI-compatible", "nothing was sent")
    assert server.requests == []


def test_api_setting_overrides_the_host_path(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, f"stand-in --host {server.url} --api openai")
    line = assert_one_line_error(cell, "OllamaResponseError", "HTTP 404", "/v1")
    assert "ollama pull" not in line
    assert server.last.path == "/chat/completions"  # what --api openai asked for
    kernel.ok("%config OllamaMagics.api = 'openai'")
    try:
        assert kernel.value("__import__('ollama_nb')._magics.active().api") == "openai"
        cell = run_cell(kernel, f"stand-in --host {v1(server)} --api ollama")
        assert_one_line_error(cell, "OllamaResponseError", "HTTP 404")
        assert server.last.path == "/v1/api/generate"  # the cell's --api wins
    finally:
        kernel.ok("%config OllamaMagics.api = 'auto'")


def test_the_key_is_sent_and_never_shown(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok(f"import os; os.environ['OPENAI_API_KEY'] = {SECRET!r}")
    try:
        server.configure(api_key=SECRET, reply="Authorized.")
        ok = run_cell(kernel, f"stand-in --host {v1(server)}")
        assert ok.status == "ok", ok.error_text()
        assert server.last.headers["authorization"] == f"Bearer {SECRET}"
        config = kernel.ok(f"%config OllamaMagics.host = {v1(server)!r}\n%ollama config")
        server.configure(api_key="another-key-entirely")
        refused = run_cell(kernel, f"stand-in --host {v1(server)}")
        assert_one_line_error(refused, "OllamaResponseError", "HTTP 401", "$OPENAI_API_KEY")
        seen = json.dumps([m.content for c in (ok, config, refused) for m in c.outputs()])
        assert "set (not shown)" in seen and "$OPENAI_API_KEY" in seen
        assert SECRET not in seen and SECRET not in kernel.value("repr(vars(_ollama))")
    finally:
        kernel.ok("del os.environ['OPENAI_API_KEY']\n%config OllamaMagics.host = None")


# -- the Python API ------------------------------------------------------------------------


def test_generate_and_embed_through_the_api(server: StandInServer) -> None:
    answer = ollama_nb.generate("Hi.", "stand-in", host=v1(server), display=False)
    assert answer.text and answer.done_reason == "stop"
    # The stand-in's own words, or (tests/run --forward) the real engine's.
    assert answer.text.startswith("[stand-in]") != server.last.forwarded
    vectors = ollama_nb.embed(["red apple", "green apple"], "stand-in-embed",
                              host=v1(server), display=False)  # fmt: skip
    assert len(vectors) == 2 and len(vectors[0]) == 16
    assert server.last.path == "/v1/embeddings"
    assert server.last.body == {"model": "stand-in-embed", "input": ["red apple", "green apple"]}
    same = ollama_nb.embed("red apple", "stand-in-embed", host=server.url, display=False)
    assert same == pytest.approx(vectors[0])  # the same vectors as Ollama's /api/embed
    with pytest.raises(OllamaModelNotFoundError) as caught:
        ollama_nb.embed("Hi.", "no-such-model", host=v1(server), display=False)
    assert "ollama pull" not in str(caught.value) and "no-such-model" in str(caught.value)


def test_api_keyword_on_amap(server: StandInServer) -> None:
    host = f"{server.url}/v1"
    job = ollama_nb.amap("Say {item}.", list("abc"), "stand-in", host=host, parallel=2,
                         display=False, api="openai")  # fmt: skip
    batch = asyncio.run(job)
    assert [r.done_reason for r in batch] == ["stop"] * 3
    assert {r.path for r in server.requests} == {CHAT}
    with pytest.raises(ValueError, match="api takes"):
        ollama_nb.generate("Hi.", "stand-in", host=server.url, api="grpc", display=False)


# -- units: SSE framing ----------------------------------------------------------------------

EVENTS = (
    'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Grüße "}}]}'
    "\n\n"
    ": keep-alive\r\n\r\n"
    'data: {"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}\r\n\r\n'
    'event: message\nid: 3\ndata: {"choices":[{"index":0,"delta":{"content":"🌍"},\n'
    'data: "finish_reason":"length"}]}\n\n'
    'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    "data: [DONE]\n\n"
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(EVENTS)])
def test_sse_framing_holds_split_utf8_and_every_field(size: int) -> None:
    decoder = EventChunks(chat=True)
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(EVENTS), size):
        chunks += decoder.feed(EVENTS[start : start + size])
    chunks += decoder.end()
    texts = [(c["message"]["content"], c["message"]["thinking"]) for c in chunks[:-1]]
    assert texts == [("Grüße ", ""), ("", "hmm"), ("🌍", "")]
    final = chunks[-1]
    final.pop("eval_duration", None)  # measured on arrival (no timings sent), when it can
    assert final == {"done": True, "done_reason": "length", "model": "m",
                     "prompt_eval_count": 7, "eval_count": 3}  # fmt: skip


def test_sse_generate_chunks_and_a_body_without_done() -> None:
    decoder = EventChunks(chat=False)
    body = b'data: {"choices":[{"delta":{"content":"a","reasoning":"r"},"finish_reason":"stop"}]}'
    assert decoder.feed(body) == []  # no blank line yet: the event may go on
    chunks = decoder.end()
    assert chunks[0] == {"response": "a", "thinking": "r"}
    assert chunks[1]["done"] is True and chunks[1]["done_reason"] == "stop"
    cut = EventChunks(chat=False)
    assert cut.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n') != []
    with pytest.raises(OllamaResponseError, match="without a finish_reason or \\[DONE\\]"):
        cut.end()  # no finish_reason, no [DONE]: the server failed mid-answer


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'data: {"choices": [\n\n', "not JSON"),
        (b"data: [1, 2]\n\n", "not an object"),
        (b'{"choices": []}\n', "not a Server-Sent Event"),
        (b'data: {"choices": [{"delta": "x"}]}\n\n', "'delta' is not an object"),
        (b'data: {"choices": [{"delta": {"content": 5}}]}\n\n', "not a string"),
        (b'data: {"error": {"message": "overloaded", "type": "api_error"}}\n\n', "overloaded"),
    ],
)
def test_a_bad_event_is_one_readable_error(data: bytes, words: str) -> None:
    with pytest.raises(OllamaResponseError) as caught:
        EventChunks(chat=True).feed(data)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_sse_line_cap() -> None:
    decoder = EventDecoder(max_line_bytes=64)
    with pytest.raises(OllamaResponseError, match="longer than"):
        decoder.feed(b"data: " + b"x" * 100)
    decoder = EventDecoder(max_line_bytes=64)
    with pytest.raises(OllamaResponseError, match="longer than"):
        for _ in range(10):
            decoder.feed(b"data: " + b"x" * 20 + b"\n")  # one event of many data lines


# -- units: the mapping ----------------------------------------------------------------------


def test_request_mapping() -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
    body = chat_body({
        "model": "m", "prompt": "Hi", "system": "Be brief.", "stream": True, "images": [png],
        "options": {"num_predict": 5, "temperature": 0, "top_p": 0.9, "seed": 1,
                    "stop": ["\n"], "min_p": 0.1},
        "think": "high", "format": {"type": "object"}, "keep_alive": "5m",
    })  # fmt: skip
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Hi"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        ]},
    ]  # fmt: skip
    assert body["max_tokens"] == 5 and body["temperature"] == 0 and body["top_p"] == 0.9
    assert body["seed"] == 1 and body["stop"] == ["\n"] and body["min_p"] == 0.1
    assert body["reasoning_effort"] == "high" and "keep_alive" not in body
    assert body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}},
    }  # fmt: skip
    assert body["stream_options"] == {"include_usage": True}
    assert chat_body({"model": "m", "prompt": "x", "format": "json", "think": True})[
        "response_format"
    ] == {"type": "json_object"}
    assert data_url("/9j/4AAQSkZJRg==").startswith("data:image/jpeg;base64,")


def test_error_shapes() -> None:
    openai = b'{"error": {"message": "The model `x` does not exist", "type":'
    openai += b' "invalid_request_error", "code": "model_not_found"}}'
    assert error_fields(openai) == ("The model `x` does not exist", "model_not_found")
    assert error_fields(b'{"object": "error", "message": "bad", "code": 400}') == ("bad", "")
    assert error_fields(b'{"detail": "Not Found"}') == ("Not Found", "")
    assert error_fields(b'{"error": "model \\"x\\" not found"}')[0] == 'model "x" not found'
    assert error_fields(b"<html>502 Bad Gateway</html>")[0] == "<html>502 Bad Gateway</html>"
    error = OPENAI_PROTOCOL.status_error(404, openai, "x", "http://h/v1", "http://h/v1/c", "")
    assert isinstance(error, OllamaModelNotFoundError)
    assert "ollama pull" not in str(error) and "%ollama models" in str(error)


def test_auto_picks_the_protocol_from_the_host_path() -> None:
    assert protocol_for("auto", "http://127.0.0.1:8080/v1") is OPENAI_PROTOCOL
    assert protocol_for(None, "https://example.com:443/openai/v1") is OPENAI_PROTOCOL
    assert protocol_for("auto", "http://127.0.0.1:11434") is OLLAMA
    assert protocol_for("auto", "http://127.0.0.1:11434/v1x") is OLLAMA
    assert protocol_for("openai", "http://127.0.0.1:11434") is OPENAI_PROTOCOL
    assert protocol_for("ollama", "http://127.0.0.1:8080/v1") is OLLAMA


def test_an_image_goes_as_a_data_url(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("from ollama_nb.testing import make_png; picture = make_png(4, 3)")
    cell = run_cell(kernel, f"stand-in-vision --host {v1(server)} --image picture", "What?")
    assert cell.status == "ok", cell.error_text()
    assert "saw 1 image: 4x3 PNG" in result(kernel)["text"]
    (sent,) = server.requests  # no capability check first: /api/show has no counterpart
    content = sent.body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    stats = kernel.run("%ollama stats")  # counted with the rest
    assert stats.status == "ok" and "time to first token" in json.dumps(
        [m.content for m in stats.outputs()]
    )


def test_embed_errors_name_the_endpoint_the_server_was_asked_at() -> None:
    """Against an OpenAI-compatible server, a wrong embeddings answer names /v1/embeddings
    (what the server was asked at), not Ollama's /api/embed."""
    one_vector = json.dumps({"data": [{"index": 0, "embedding": [0.5]}]}).encode()

    def handler(request: RawRequest, conn: socket.socket) -> None:
        conn.sendall(response("200 OK", one_vector))

    with RawServer(handler) as raw, pytest.raises(OllamaResponseError) as caught:
        ollama_nb.embed(["a", "b"], "m", host=f"{raw.url}/v1", display=False)
    assert str(caught.value) == (
        f"{raw.url}/v1/embeddings answered without one embedding per text (2 sent)"
    )
    assert raw.requests[0].target == "/v1/embeddings"
