"""Protocol conformance for OpenAI's /v1 API: what such a server does on the wire, checked
on the stand-in's /v1, on the real llama.cpp engine that tests/run sets up
(llama-cpp-python's server, tests/engine_server.py) and, when ``OLLAMA_NB_OPENAI_HOST`` is
set, on another real server (llama.cpp, vLLM, LM Studio, Ollama's /v1)::

    OLLAMA_NB_OPENAI_HOST=http://127.0.0.1:8080/v1 OLLAMA_NB_OPENAI_MODEL=m \\
        tests/run tests/test_conformance_openai.py -rs

Only raw httpx here, never ollama_nb's client: the suite judges the server. Checks that
need a stand-in knob or a behaviour servers differ on are skipped on a real server, with
the reason.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from engine_server import EMBED_MODEL, MODEL, EngineServer

from ollama_nb.testing import StandInServer, make_png

REAL_HOST = os.environ.get("OLLAMA_NB_OPENAI_HOST", "").strip().rstrip("/")


@dataclass(frozen=True)
class Target:
    url: str  # ends in /v1
    model: str
    embed_model: str | None
    standin: StandInServer | None
    usage_in_stream: bool = True  # llama-cpp-python's server sends none

    def need_standin(self, why: str) -> StandInServer:
        if self.standin is None:
            pytest.skip(f"needs the stand-in: {why}")
        return self.standin


@pytest.fixture(params=["stand-in", "engine"])
def target(request: pytest.FixtureRequest, standin_server: StandInServer) -> Iterator[Target]:
    if request.param == "engine":
        engine: EngineServer = request.getfixturevalue("engine")
        yield Target(engine.url, MODEL, EMBED_MODEL, None, usage_in_stream=False)
        return
    if REAL_HOST:
        model = os.environ.get("OLLAMA_NB_OPENAI_MODEL", "")
        embed = os.environ.get("OLLAMA_NB_OPENAI_EMBED_MODEL") or None
        yield Target(REAL_HOST, model, embed, None)
        return
    standin_server.reset()
    yield Target(f"{standin_server.url}/v1", "stand-in", "stand-in-embed", standin_server)


def stream(target: Target, **body: Any) -> tuple[httpx.Response, list[str]]:
    """POST a streamed chat; the response and its non-empty lines."""
    payload = {"model": target.model, "messages": [{"role": "user", "content": "Hi."}],
               "stream": True, **body}  # fmt: skip
    url = f"{target.url}/chat/completions"
    with httpx.Client(timeout=30) as http, http.stream("POST", url, json=payload) as response:
        text = response.read().decode()
    return response, [line for line in text.split("\n") if line.strip()]


def events(lines: list[str]) -> list[Any]:
    assert all(line.startswith("data: ") for line in lines), lines[:3]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_a_streamed_answer_is_server_sent_events_with_usage_last(target: Target) -> None:
    response, lines = stream(target, max_tokens=5, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(lines)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    finishes = [c["choices"][0].get("finish_reason") for c in with_choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert text
    if not target.usage_in_stream:
        pytest.skip("this server sends no usage in a stream (the client then shows no counts)")
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if target.standin is not None:
        # Never mistaken for a model's answer; unless (tests/run --forward) it is one.
        assert text.startswith("[stand-in]") != target.standin.last.forwarded
        assert "X-Stand-In" in response.headers


def test_without_include_usage_no_chunk_has_usage(target: Target) -> None:
    target.need_standin("servers differ (llama.cpp adds timings and usage anyway)")
    _, lines = stream(target)
    assert not any(c.get("usage") for c in events(lines))


def test_an_unstreamed_answer_is_one_chat_completion(target: Target) -> None:
    body = {"model": target.model, "messages": [{"role": "user", "content": "Hi."}],
            "max_tokens": 3}  # fmt: skip
    answer = httpx.post(f"{target.url}/chat/completions", json=body, timeout=30).json()
    assert answer["object"] == "chat.completion"
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 3
    assert answer["usage"]["prompt_tokens"] >= 1


def test_json_object_format(target: Target) -> None:
    _, lines = stream(target, max_tokens=200, response_format={"type": "json_object"})
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in events(lines) if c["choices"]
    )
    if target.standin is not None:
        assert isinstance(json.loads(text), dict)
    else:
        assert text.lstrip().startswith("{")  # a random model may hit max_tokens first


def test_models_are_a_list(target: Target) -> None:
    answer = httpx.get(f"{target.url}/models", timeout=30).json()
    assert answer["object"] == "list"
    assert all(m["object"] == "model" and isinstance(m["id"], str) for m in answer["data"])
    if target.standin is not None:
        assert "stand-in:latest" in [m["id"] for m in answer["data"]]  # as Ollama names it


def test_embeddings(target: Target) -> None:
    if target.embed_model is None:
        pytest.skip("no embedding model named (OLLAMA_NB_OPENAI_EMBED_MODEL)")
    body = {"model": target.embed_model, "input": ["red apple", "blue sky"]}
    answer = httpx.post(f"{target.url}/embeddings", json=body, timeout=30).json()
    assert answer["object"] == "list"
    assert [d["index"] for d in answer["data"]] == [0, 1]
    vector = answer["data"][0]["embedding"]
    assert vector and all(isinstance(x, float) for x in vector)


def test_errors_have_openai_s_shape(target: Target) -> None:
    body = {"model": target.model, "messages": "not a list"}
    bad = httpx.post(f"{target.url}/chat/completions", json=body, timeout=30)
    # 400 on the stand-in (and Ollama); llama-cpp-python answers 500: both say why in JSON.
    assert 400 <= bad.status_code < 600
    error = bad.json()
    message = error["error"]["message"] if "error" in error else error.get("detail")
    assert message
    standin = target.need_standin("llama.cpp serves any model name with its one model")
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi."}]}
    missing = httpx.post(f"{target.url}/chat/completions", json=body, timeout=30)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]
    assert standin.last.path == "/v1/chat/completions"


def test_knobs_apply_to_v1(target: Target) -> None:
    standin = target.need_standin("knobs are the stand-in's")
    _, lines = stream(target, standin_reply="One two three.", standin_error_after=2)
    assert lines[-1].startswith("data: ") and "stand-in error" in lines[-1]
    assert json.loads(lines[-1][6:])["error"]["type"] == "api_error"
    text = "".join(c["choices"][0]["delta"]["content"] for c in map(json.loads, (
        line[6:] for line in lines[:-1])))  # fmt: skip
    assert text == "One two "
    assert standin.last.body["standin_error_after"] == 2  # recorded as sent


def test_split_utf8_is_the_clients_to_join(target: Target) -> None:
    target.need_standin("split_utf8 is a stand-in knob")
    _, lines = stream(target, standin_reply="Grüße 🌍 fin.", standin_split_utf8=True)
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in events(lines) if c["choices"])  # fmt: skip
    assert text == "Grüße 🌍 fin."


def test_images_as_data_urls(target: Target) -> None:
    target.need_standin("the stand-in's vision model says what it saw")
    png = make_png(4, 3)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    content = [{"type": "text", "text": "What is it?"},
               {"type": "image_url", "image_url": {"url": url}}]  # fmt: skip
    _, lines = stream(target, model="stand-in-vision",
                      messages=[{"role": "user", "content": content}])  # fmt: skip
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in events(lines) if c["choices"])  # fmt: skip
    assert "saw 1 image: 4x3 PNG" in text
