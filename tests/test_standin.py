"""The Ollama stand-in (ollama_nb.testing) speaks Ollama's protocol faithfully.

The official `ollama` client, which nobody here wrote, is the judge of the shapes; raw
httpx shows what that client cannot: when bytes arrive, how connections end, and what
the server noticed. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from ollama_nb.testing import (
    RequestRecord,
    StandInServer,
    make_png,
    serve,
    unresponsive_listener,
)
from ollama_nb.testing._fields import go_base64_decode, parse_go_duration
from ollama_nb.testing._names import parse_name

REPO = Path(__file__).resolve().parent.parent
GENERATE = "/api/generate"


@pytest.fixture(scope="module")
def server() -> Iterator[StandInServer]:
    with StandInServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server: StandInServer) -> None:
    server.reset()


@pytest.fixture
def client(server: StandInServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=10) as running:
        yield running


@pytest.fixture
def http(server: StandInServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as running:
        yield running


def generate_body(**extra: Any) -> dict[str, Any]:
    return {"model": "stand-in", "prompt": "Why is the sky blue?", **extra}


def closed(record: RequestRecord, timeout: float = 2.0) -> RequestRecord:
    assert record.wait_closed(timeout), "the server did not finish handling the request"
    return record


# -- the official client -------------------------------------------------------------------


def test_generate_stream_with_official_client(client: ollama.Client) -> None:
    parts = list(client.generate(model="stand-in", prompt="Why is the sky blue?", stream=True))
    text = "".join(p.response or "" for p in parts)
    final = parts[-1]

    assert text.startswith("[stand-in] ")
    assert all(not p.done for p in parts[:-1])
    assert final.done and final.done_reason == "stop"
    assert final.eval_count == len(parts) - 1 == 24  # one chunk per token, default 24
    assert final.eval_duration and final.eval_duration > 0
    assert final.prompt_eval_count and final.prompt_eval_count > 0
    assert final.total_duration and final.load_duration and final.prompt_eval_duration
    components = final.load_duration + final.prompt_eval_duration + final.eval_duration
    assert final.total_duration >= components
    assert final.context and all(isinstance(i, int) for i in final.context)

    # Deterministic: the same request gives the same text, streamed or not.
    whole = client.generate(model="stand-in", prompt="Why is the sky blue?", stream=False)
    assert whole.response == text and whole.done and whole.eval_count == 24


def test_answer_depends_only_on_the_request(client: ollama.Client) -> None:
    def answer(**kwargs: Any) -> str:
        return client.generate(model="stand-in", prompt="p", **kwargs).response or ""

    first = answer()
    with serve() as url, ollama.Client(host=url, timeout=10) as other:
        # Another server instance gives the same answer.
        assert other.generate(model="stand-in", prompt="p").response == first
    assert answer(options={"seed": 7}) != first
    assert answer(system="be brief") != first
    assert client.generate(model="stand-in", prompt="q").response != first


def test_chat_stream_with_official_client(client: ollama.Client) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello?"},
    ]
    parts = list(client.chat(model="stand-in", messages=messages, stream=True))
    text = "".join(p.message.content or "" for p in parts)
    assert text.startswith("[stand-in] ")
    assert {p.message.role for p in parts} == {"assistant"}
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == len(parts) - 1
    whole = client.chat(model="stand-in", messages=messages, stream=False)
    assert whole.message.content == text


def test_async_client_stream(server: StandInServer) -> None:
    async def run() -> list[ollama.ChatResponse]:
        async_client = ollama.AsyncClient(host=server.url, timeout=10)
        try:
            stream = await async_client.chat(
                model="stand-in:latest", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            return [part async for part in stream]
        finally:
            await async_client.close()

    parts = asyncio.run(asyncio.wait_for(run(), 10))
    assert "".join(p.message.content or "" for p in parts).startswith("[stand-in] ")
    assert parts[-1].done and parts[-1].eval_count == 24


def test_thinking_streams_before_the_answer(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model="stand-in-think",
            messages=[{"role": "user", "content": "think"}],
            think=True,
            stream=True,
        )
    )
    thinking = "".join(p.message.thinking or "" for p in parts)
    content = "".join(p.message.content or "" for p in parts)
    assert thinking.startswith("[stand-in thinking] ")
    assert content.startswith("[stand-in] ")
    first_content = next(i for i, p in enumerate(parts) if p.message.content)
    assert all(not p.message.thinking for p in parts[first_content:])

    generated = client.generate(model="stand-in-think", prompt="x", think=True, stream=False)
    assert (generated.thinking or "").startswith("[stand-in thinking] ")

    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="stand-in", prompt="x", think=True)
    assert info.value.status_code == 400
    assert info.value.error == '"stand-in" does not support thinking'


BUILT_IN = {
    "stand-in:latest": ["completion"],
    "stand-in-think:latest": ["completion", "thinking"],
    "stand-in-vision:latest": ["completion", "vision"],
    "stand-in-embed:latest": ["embedding"],
    "stand-in-tools:latest": ["completion", "tools"],
}


def test_list_ps_show(client: ollama.Client) -> None:
    listed = client.list().models
    assert [m.model for m in listed] == list(BUILT_IN)  # newest first
    stand_in = listed[0]
    assert stand_in.details and stand_in.details.family == "stand-in"
    assert stand_in.details.parameter_size == "0B"
    assert stand_in.size and stand_in.digest
    raw = httpx.get(f"{client._client.base_url}/api/tags").json()["models"]
    assert {m["name"]: m["capabilities"] for m in raw} == BUILT_IN
    assert {m["details"]["context_length"] for m in raw} == {4096}

    assert client.ps().models == []
    client.generate(model="stand-in", prompt="x")
    [loaded] = client.ps().models
    assert loaded.model == "stand-in:latest"
    assert loaded.expires_at and loaded.context_length and loaded.size_vram

    for name, capabilities in BUILT_IN.items():
        shown = client.show(name)
        assert shown.capabilities == capabilities
        assert shown.modelinfo and shown.modelinfo["stand-in.context_length"] == 4096
        assert shown.modelinfo["general.architecture"] == "stand-in"
        assert shown.details and shown.details.format == "gguf"
        assert shown.template and shown.parameters and shown.license
    assert client.show("stand-in-embed").modelinfo["stand-in.embedding_length"] == 16
    with pytest.raises(ollama.ResponseError) as info:
        client.show("missing")
    assert (info.value.status_code, info.value.error) == (404, "model 'missing:latest' not found")


def test_ps_after_load_unload_and_expiry(client: ollama.Client) -> None:
    loaded = client.generate(model="stand-in-think", keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load" and not loaded.response
    [entry] = client.ps().models
    assert entry.model == "stand-in-think:latest" and entry.expires_at
    left = entry.expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)

    client.generate(model="stand-in", keep_alive=-1)
    assert [m.model for m in client.ps().models] == ["stand-in:latest", "stand-in-think:latest"]
    forever = client.ps().models[0].expires_at
    assert forever and forever - datetime.now(timezone.utc) > timedelta(days=365 * 200)

    unloaded = client.generate(model="stand-in-think", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert [m.model for m in client.ps().models] == ["stand-in:latest"]
    chat = client.chat(model="stand-in", messages=[], keep_alive=0)
    assert chat.done_reason == "unload" and client.ps().models == []

    client.generate(model="stand-in", prompt="x", keep_alive=0.3)  # seconds
    assert [m.model for m in client.ps().models] == ["stand-in:latest"]
    deadline = time.monotonic() + 5
    while client.ps().models:
        assert time.monotonic() < deadline, "the keep-alive did not expire"
        time.sleep(0.05)


def test_embed_with_official_client(client: ollama.Client) -> None:
    one = client.embed(model="stand-in-embed", input="The sky is blue.")
    [vector] = one.embeddings
    assert len(vector) == 16 and abs(sum(v * v for v in vector) - 1) < 1e-6
    many = client.embed(model="stand-in-embed", input=["The sky is blue.", "Grass is green."])
    assert many.embeddings[0] == vector and len(many.embeddings) == 2
    assert many.prompt_eval_count == 7 and many.total_duration and many.load_duration
    cut = client.embed(model="stand-in-embed", input="The sky is blue.", dimensions=4)
    assert len(cut.embeddings[0]) == 4
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="stand-in", input="x")
    assert (info.value.status_code, info.value.error) == (
        400, "this model does not support embeddings"
    )  # fmt: skip
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="missing", input="x")
    assert info.value.status_code == 404


def test_pull_errors_with_official_client(server: StandInServer, client: ollama.Client) -> None:
    server.configure(pull_interval=0.001)
    with pytest.raises(ollama.ResponseError) as info:
        list(client.pull("bad name!", stream=True))
    assert (info.value.status_code, info.value.error) == (400, "invalid model name")
    statuses: list[str] = []
    with pytest.raises(ollama.ResponseError) as info:
        statuses.extend(p.status or "" for p in client.pull("no-such-model", stream=True))
    assert statuses == ["pulling manifest"]  # progress first, then the error line
    assert info.value.error == "pull model manifest: file does not exist"
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("no-such-model")  # not streamed: a status
    assert info.value.status_code == 500


def test_pull_seconds_spreads_the_progress(server: StandInServer, http: httpx.Client) -> None:
    server.configure(pull_seconds=0.6)
    started = time.monotonic()
    lines = list(http.post("/api/pull", json={"model": "slow"}).iter_lines())
    took = time.monotonic() - started
    assert json.loads(lines[-1]) == {"status": "success"} and len(lines) > 8
    assert 0.5 <= took < 3


def test_images_with_official_client(server: StandInServer, client: ollama.Client) -> None:
    png = make_png(640, 480)
    seen = client.generate(model="stand-in-vision", prompt="What is it?", images=[png])
    assert (seen.response or "").startswith("[stand-in] saw 1 image: 640x480 PNG.")
    record = server.wait_for_request(GENERATE)
    assert [(i.format, i.width, i.height, i.data) for i in record.images] == [
        ("PNG", 640, 480, png)
    ]
    messages = [{"role": "user", "content": "And these?", "images": [png, make_png(2, 3)]}]
    chat = client.chat(model="stand-in-vision", messages=messages)
    assert chat.message.content.startswith("[stand-in] saw 2 images: 640x480 PNG, 2x3 PNG.")
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="stand-in", prompt="What is it?", images=[png])
    assert (info.value.status_code, info.value.error) == (
        400, "this model is missing data required for image input"
    )  # fmt: skip
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="stand-in-vision", prompt="?", images=[b"not an image"])
    assert info.value.status_code == 500 and "image: unknown format" in info.value.error


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        list(client.generate(model="llama3.2", prompt="x", stream=True))
    assert info.value.status_code == 404
    assert info.value.error == "model 'llama3.2' not found"
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404


def test_pull_progress_then_listed(server: StandInServer, client: ollama.Client) -> None:
    server.configure(pull_interval=0.001)
    progress = list(client.pull("tiny", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = {p.digest for p in progress if p.digest}
    assert len(layers) == 2
    for digest in layers:
        lines = [p for p in progress if p.digest == digest]
        assert lines[0].completed is None and lines[0].total
        done = [p.completed or 0 for p in lines[1:]]
        assert done == sorted(done) and done[-1] == lines[0].total
        assert lines[0].status == f"pulling {digest.removeprefix('sha256:')[:12]}"
    assert "tiny:latest" in [m.model for m in client.list().models]
    assert client.generate(model="tiny", prompt="x").response


def test_pull_resumes_after_disconnect(server: StandInServer, http: httpx.Client) -> None:
    # Stalling after 6 lines makes "what the server wrote" exactly "what we read":
    # manifest, the layer's first line, then 100_000 ... 400_000.
    server.configure(pull_interval=0.001, pull_step=100_000, stall_after=6)
    with http.stream("POST", "/api/pull", json={"model": "resumable"}) as response:
        lines = response.iter_lines()
        seen = [json.loads(next(lines)) for _ in range(6)]
    assert [line.get("completed") for line in seen[2:]] == [100_000, 200_000, 300_000, 400_000]
    record = closed(server.wait_for_request("/api/pull"))
    assert record.disconnected_at is not None and record.chunks_after_disconnect == 0

    server.configure(stall_after=None)
    response = http.post("/api/pull", json={"model": "resumable"})
    again = [json.loads(line) for line in response.iter_lines()]
    completed = [line["completed"] for line in again if "completed" in line]
    assert completed[0] == 500_000  # continues, does not start over
    assert again[-1] == {"status": "success"}

    whole = http.post("/api/pull", json={"model": "other", "stream": False})
    assert whole.json() == {"status": "success"}


# -- text, format and options -----------------------------------------------------------------


def test_reply_knob_is_exact_one_chunk_per_token(client: ollama.Client) -> None:
    reply = '<img src=x onerror="alert(1)"> héllo wörld 🙂\n```\na < b\n```'
    parts = list(
        client.generate(model="stand-in", prompt="x", options={"standin_reply": reply}, stream=True)
    )
    assert "".join(p.response or "" for p in parts) == reply
    assert [p.response for p in parts[:-1]] == [
        '<img ', 'src=x ', 'onerror="alert(1)"> ', 'héllo ', 'wörld ', '🙂\n', '```\n',
        'a ', '< ', 'b\n', '```',
    ]  # fmt: skip
    assert parts[-1].eval_count == 11


def test_go_style_json_escapes(server: StandInServer, http: httpx.Client) -> None:
    server.configure(reply="<a&b>")
    raw = http.post(GENERATE, json=generate_body()).text
    assert "\\u003ca\\u0026b\\u003e" in raw and "<a" not in raw


def test_format_json_and_schema(client: ollama.Client) -> None:
    answer = json.loads(client.generate(model="stand-in", prompt="x", format="json").response or "")
    assert answer["stand_in"] is True and answer["answer"].startswith("[stand-in] ")

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object"},
        },
    }
    chat = client.chat(model="stand-in", messages=[{"role": "user", "content": "x"}], format=schema)
    assert json.loads(chat.message.content or "") == {
        "name": "stand-in", "age": 0, "score": 0, "ok": True, "tags": [], "extra": {},
    }  # fmt: skip


def test_num_predict_and_stop(client: ollama.Client) -> None:
    cut = client.generate(model="stand-in", prompt="x", options={"num_predict": 5})
    assert cut.done_reason == "length" and cut.eval_count == 5
    full = client.generate(model="stand-in", prompt="x").response or ""
    assert full.startswith(cut.response or "-")

    stopped = client.generate(
        model="stand-in", prompt="x", options={"standin_reply": "one two. three", "stop": ["."]}
    )
    assert stopped.response == "one two" and stopped.done_reason == "stop"


def test_load_only_request(client: ollama.Client) -> None:
    loaded = client.generate(model="stand-in")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""


# -- knobs ----------------------------------------------------------------------------------


def test_knobs_via_options_override_configure(server: StandInServer, http: httpx.Client) -> None:
    server.configure(tokens=3, token_interval=0.001)
    options = {"standin_tokens": 5, "temperature": 0}
    lines = list(http.post(GENERATE, json=generate_body(options=options)).iter_lines())
    assert len(lines) == 5 + 1
    record = server.wait_for_request(GENERATE)
    assert record.knobs["tokens"] == 5 and record.knobs["token_interval"] == 0.001
    assert len(list(http.post(GENERATE, json=generate_body()).iter_lines())) == 3 + 1

    server.reset()
    assert server.knobs["tokens"] == 24 and server.requests == []


def test_knob_typo_is_a_clear_400(server: StandInServer, http: httpx.Client) -> None:
    response = http.post(GENERATE, json=generate_body(options={"standin_token_intervall": 1}))
    assert response.status_code == 400
    assert "standin_token_intervall" in response.json()["error"]
    bad = http.post(GENERATE, json=generate_body(options={"standin_tokens": "many"}))
    assert bad.status_code == 400 and "standin_tokens" in bad.json()["error"]
    with pytest.raises(ValueError, match="tokenz"):
        server.configure(tokenz=1)
    with pytest.raises(ValueError, match="tokenz"):
        StandInServer(tokenz=1)


def test_bad_requests(http: httpx.Client) -> None:
    assert http.post(GENERATE, content=b"{not json").status_code == 400
    assert http.post(GENERATE).status_code == 400
    no_model = http.post(GENERATE, json={"prompt": "x"})
    assert (no_model.status_code, no_model.json()) == (404, {"error": "model '' not found"})
    assert http.get(GENERATE).status_code == 405
    missing = http.get("/api/nothing")
    assert missing.status_code == 404 and missing.text == "404 page not found"
    root = http.get("/")
    assert root.text == "Ollama is running (stand-in)"
    assert root.headers["x-stand-in"].startswith("ollama_nb.testing")
    assert http.head("/").status_code == 200
    assert http.get("/api/version").json() == {"version": "0.0.0-stand-in"}


def test_api_key(server: StandInServer) -> None:
    server.configure(api_key="sekrit")
    with pytest.raises(ollama.ResponseError) as info, ollama.Client(host=server.url) as anonymous:
        anonymous.list()
    assert info.value.status_code == 401
    with ollama.Client(host=server.url, headers={"Authorization": "Bearer sekrit"}) as authorized:
        assert authorized.list().models
    assert server.last.headers["authorization"] == "Bearer sekrit"


def test_status_knob(server: StandInServer, client: ollama.Client, http: httpx.Client) -> None:
    server.configure(status=503, error="server busy, please try again.")
    with pytest.raises(ollama.ResponseError) as info:
        list(client.generate(model="stand-in", prompt="x", stream=True))
    assert info.value.status_code == 503
    assert info.value.error == "server busy, please try again."
    assert http.get("/api/tags").status_code == 503
    assert http.get("/").status_code == 200  # the health check stays up


def test_error_after_ends_the_stream_with_an_error_line(
    server: StandInServer, client: ollama.Client, http: httpx.Client
) -> None:
    server.configure(error_after=3, error="out of memory")
    lines = [json.loads(line) for line in http.post(GENERATE, json=generate_body()).iter_lines()]
    assert len(lines) == 4 and lines[-1] == {"error": "out of memory"}
    record = closed(server.wait_for_request(GENERATE))
    assert record.completed and record.chunks_sent == 4 and record.status == 200

    with pytest.raises(ollama.ResponseError) as info:
        list(client.generate(model="stand-in", prompt="x", stream=True))
    assert info.value.error == "out of memory" and info.value.status_code == -1


def test_drop_after_cuts_the_body(server: StandInServer, http: httpx.Client) -> None:
    server.configure(drop_after=4)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", GENERATE, json=generate_body()) as response,
    ):
        received.extend(response.iter_lines())
    assert len(received) == 4
    record = closed(server.wait_for_request(GENERATE))
    assert not record.completed and record.chunks_sent == 4 and record.disconnected_at is None


def test_malformed_after_inserts_one_bad_line(server: StandInServer, http: httpx.Client) -> None:
    server.configure(malformed_after=2, tokens=5)
    lines = list(http.post(GENERATE, json=generate_body()).iter_lines())
    assert len(lines) == 5 + 1 + 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[2])
    assert json.loads(lines[-1])["done"] is True
    assert json.loads(lines[0])["response"] == "[stand-in] "


def test_split_utf8_lines_arrive_in_pieces(server: StandInServer, http: httpx.Client) -> None:
    reply = "héllo wörld ünïcode"
    server.configure(split_utf8=True, reply=reply)
    pieces: list[bytes] = []
    with http.stream("POST", GENERATE, json=generate_body()) as response:
        pieces.extend(response.iter_raw())

    def decodes(piece: bytes) -> bool:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    assert len(pieces) >= 2 * 4  # each of the 4 lines in two reads
    assert sum(not decodes(p) for p in pieces) >= 3  # cut inside é, ö, ü
    lines = b"".join(pieces).decode("utf-8").splitlines()
    assert "".join(json.loads(line)["response"] for line in lines) == reply


def test_close_before_headers(server: StandInServer, http: httpx.Client) -> None:
    server.configure(close_before_headers=True)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(GENERATE, json=generate_body())
    record = closed(server.wait_for_request(GENERATE))
    assert record.first_byte_at is None and not record.completed


def test_stall_for_resumes(server: StandInServer, http: httpx.Client) -> None:
    server.configure(stall_after=2, stall_for=0.3, tokens=4)
    started = time.monotonic()
    lines = list(http.post(GENERATE, json=generate_body()).iter_lines())
    assert time.monotonic() - started >= 0.3
    assert json.loads(lines[-1])["done"] is True and len(lines) == 5


# -- timing and disconnects -------------------------------------------------------------------


def test_headers_only_arrive_with_the_first_chunk(
    server: StandInServer, http: httpx.Client
) -> None:
    server.configure(first_chunk_delay=0.4)
    started = time.monotonic()
    with http.stream("POST", GENERATE, json=generate_body()) as response:
        headers_after = time.monotonic() - started
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        lines = response.iter_lines()
        assert json.loads(next(lines))["response"] == "[stand-in] "
        assert json.loads(list(lines)[-1])["done"] is True
    assert headers_after >= 0.4
    record = closed(server.wait_for_request(GENERATE))
    assert record.first_byte_at is not None
    assert record.first_byte_at - record.started_at >= 0.4
    assert record.completed and record.chunks_sent == 25

    started = time.monotonic()
    http.get("/api/tags")  # no model to load: not delayed
    assert time.monotonic() - started < 0.3


def assert_disconnect_noticed(record: RequestRecord, closed_at: float) -> None:
    assert record.wait_closed(0.5), "disconnect not noticed within 0.5 s"
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.5
    assert record.chunks_after_disconnect == 0
    assert not record.completed


def test_disconnect_mid_stream_stops_generation(server: StandInServer, http: httpx.Client) -> None:
    server.configure(token_interval=0.05)
    with http.stream("POST", GENERATE, json=generate_body()) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    closed_at = time.monotonic()
    record = server.wait_for_request(GENERATE)
    assert_disconnect_noticed(record, closed_at)
    assert 3 <= record.chunks_sent < 25


def test_disconnect_during_stall(server: StandInServer, http: httpx.Client) -> None:
    server.configure(stall_after=2)  # stalls until the client leaves
    with http.stream("POST", GENERATE, json=generate_body()) as response:
        lines = response.iter_lines()
        next(lines), next(lines)
    closed_at = time.monotonic()
    record = server.wait_for_request(GENERATE)
    assert_disconnect_noticed(record, closed_at)
    assert record.chunks_sent == 2


def test_disconnect_during_first_chunk_delay(server: StandInServer) -> None:
    server.configure(first_chunk_delay=30)
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=0.2)) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(GENERATE, json=generate_body())
    closed_at = time.monotonic()
    record = server.wait_for_request(GENERATE)
    assert_disconnect_noticed(record, closed_at)
    assert record.first_byte_at is None and record.chunks_sent == 0


def test_keep_alive_reuses_the_connection(server: StandInServer, http: httpx.Client) -> None:
    with http.stream("POST", GENERATE, json=generate_body()) as response:
        response.read()
    http.get("/api/tags")
    http.post(GENERATE, json=generate_body(stream=False))
    http.post("/api/show", json={"model": "stand-in"})
    ids = {r.connection_id for r in server.requests}
    assert len(server.requests) == 4 and len(ids) == 1


def test_wait_for_request_is_bounded(server: StandInServer) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        server.wait_for_request("/api/chat", timeout=0.1)
    assert time.monotonic() - started < 1
    with pytest.raises(LookupError):
        _ = server.last


def test_stop_closes_live_connections() -> None:
    standin = StandInServer(stall_after=1).start()
    with (
        httpx.Client(base_url=standin.url, timeout=5) as http,
        http.stream("POST", GENERATE, json=generate_body()) as response,
    ):
        lines = response.iter_lines()
        next(lines)
        started = time.monotonic()
        standin.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)
    assert standin.requests[0].closed.is_set()


def test_unresponsive_listener_gives_connect_timeout() -> None:
    with (
        unresponsive_listener() as url,
        httpx.Client(timeout=httpx.Timeout(5, connect=0.5)) as http,
    ):
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            http.get(url)
        assert 0.45 <= time.monotonic() - started < 1.5


# -- the command line ---------------------------------------------------------------------------


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no output from the stand-in CLI in time"
    return process.stdout.readline()


def test_cli_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ollama_nb.testing", "--port", "0", "--tokens", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            line = read_line(process, 10)
            assert line.startswith("Ollama stand-in (not a model) listening on http://127.0.0.1:")
            with ollama.Client(host=line.split()[-1], timeout=5) as client:
                assert client.generate(model="stand-in", prompt="x").eval_count == 5
            process.send_signal(signal.SIGTERM)
            assert process.wait(5) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)


def test_cli_help() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "ollama_nb.testing", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=True,
    )
    assert "--first-chunk-delay" in done.stdout and "standin_" in done.stdout
    for knob in ("--num-parallel", "--max-queue", "--pull-seconds", "num_parallel (default 1)"):
        assert knob in done.stdout
    for model in ("stand-in-think", "stand-in-vision", "stand-in-embed"):
        assert model in done.stdout


# -- Go's parsing, reproduced -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("10m", 600), ("1h30m", 5400), ("1.5s", 1.5), ("-1s", -1), ("300ms", 0.3),
     ("2h45m30.5s", 9930.5), ("+5m", 300), ("1us", 1e-6), ("1\u00b5s", 1e-6)],
)  # fmt: skip
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [("10", 'time: missing unit in duration "10"'), ("", 'time: invalid duration ""'),
     ("1d", 'time: unknown unit "d" in duration "1d"'), ("m", 'time: invalid duration "m"'),
     ("1.m", None), (".s", 'time: invalid duration ".s"')],
)  # fmt: skip
def test_go_duration_errors(text: str, message: str | None) -> None:
    if message is None:  # "1." is a number in Go: one minute
        assert parse_go_duration(text) == 60
        return
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "offset"),
    [("data:image/png;base64,AAAA", 4), ("AAA", 0), ("AAAAA", 4), ("A===", 1), ("AA=A", 2),
     ("AA=", 3), ("AAAA====", 4), ("AA\nA!", 4)],
)  # fmt: skip
def test_go_base64_offsets(text: str, offset: int) -> None:
    with pytest.raises(ValueError) as info:
        go_base64_decode(text)
    assert str(info.value) == f"illegal base64 data at input byte {offset}"
    assert go_base64_decode("aGk=\n") == b"hi"


def test_model_names() -> None:
    assert parse_name("stand-in").shortest == "stand-in:latest"
    assert parse_name("Me/Model:Q4").shortest == "Me/Model:Q4"
    assert parse_name("registry.ollama.ai/library/x:1").shortest == "x:1"
    assert parse_name("Stand-In").key == parse_name("stand-in:latest").key  # case-insensitive
    for bad in ("bad name!", "-x", "a:", ":tag", "ns.x/model", "a" * 81):
        assert not parse_name(bad).valid, bad


def test_a_system_prompt_asking_for_python_gets_a_code_block(client: ollama.Client) -> None:
    from ollama_nb.testing._text import CODE_BLOCK

    plain = client.generate(model="stand-in", prompt="Read a CSV.").response or ""
    asked = (
        client.generate(
            model="stand-in", prompt="Read a CSV.", system="Answer in one ```python block."
        ).response
        or ""
    )
    assert "```" not in plain
    assert asked.startswith("[stand-in] ") and asked.endswith(f"\n\n{CODE_BLOCK}\n")
    chat = client.chat(
        model="stand-in",
        messages=[
            {"role": "system", "content": "Answer in one ```python block."},
            {"role": "user", "content": "Read a CSV."},
        ],
    )
    assert (chat.message.content or "").endswith(f"{CODE_BLOCK}\n")
