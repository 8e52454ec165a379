"""Protocol conformance: what an Ollama server does on the wire, checked on the stand-in
and, when ``OLLAMA_NB_REAL_HOST`` is set, on a real Ollama.

The same assertions judge both, so the stand-in's claim to behave like Ollama can be
checked by anyone with a real server:

    OLLAMA_NB_REAL_HOST=127.0.0.1:11434 OLLAMA_NB_REAL_MODEL=llama3.2 \\
        tests/run tests/test_conformance.py -rs

Optional: ``OLLAMA_NB_REAL_NUM_PARALLEL`` (the server's ``OLLAMA_NUM_PARALLEL``; enables
the queueing checks), ``OLLAMA_NB_REAL_PULL=1`` (allows checks that contact the model
registry). Thinking, vision and embedding checks use the first model on the server with
that capability (``OLLAMA_NB_REAL_MODEL`` first). A check is skipped, with the reason
shown by ``-rs``, only when the real server has no model that can do it or the check
needs a stand-in knob. Against a real server the suite loads and unloads models.

Only raw httpx and sockets here, never ollama_nb's client: the suite judges the server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ollama_nb.testing import StandInServer, make_png

REAL_HOST = os.environ.get("OLLAMA_NB_REAL_HOST", "").strip()
UNKNOWN = "no-such-model-conformance"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _base_url(host: str) -> str:
    """OLLAMA_HOST's rules: scheme optional (http), a bare host gets port 11434."""
    host = host.strip().strip("\"'")
    if "://" not in host:
        host = "http://" + host
        parts = urlsplit(host)
        if parts.port is None:
            host = f"http://{parts.hostname}:11434{parts.path}"
    return host.rstrip("/")


@dataclass
class Target:
    url: str
    server: StandInServer | None
    model: str  # a completion model
    models: dict[str, list[str]] = field(default_factory=dict)  # name -> capabilities
    num_parallel: int | None = None
    timeout: float = 10.0

    @property
    def real(self) -> bool:
        return self.server is None

    def standin(self, why: str) -> StandInServer:
        """The stand-in, or skip: this check needs one of its knobs."""
        if self.server is None:
            pytest.skip(f"needs a stand-in knob: {why}")
        return self.server

    def with_capability(self, capability: str, *, without: str | None = None) -> str:
        names = [self.model, *self.models]
        for name in names:
            caps = self.models.get(name, [])
            if capability in caps and (without is None or without not in caps):
                return name
        lacking = f"'{capability}'" + (f" but not '{without}'" if without else "")
        pytest.skip(f"the server has no model with {lacking}")


def _capabilities(client: httpx.Client, name: str) -> list[str]:
    response = client.post("/api/show", json={"model": name})
    return list(response.json().get("capabilities") or []) if response.is_success else []


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    if not REAL_HOST:
        with StandInServer() as server:
            models = {
                "stand-in": ["completion"],
                "stand-in-think": ["completion", "thinking"],
                "stand-in-vision": ["completion", "vision"],
                "stand-in-embed": ["embedding"],
                "stand-in-tools": ["completion", "tools"],
            }
            yield Target(server.url, server, "stand-in", models, num_parallel=1)
        return
    url = _base_url(REAL_HOST)
    with httpx.Client(base_url=url, timeout=30) as client:
        names = [m["name"] for m in client.get("/api/tags").json()["models"]]
        models = {name: _capabilities(client, name) for name in names}
    model = os.environ.get("OLLAMA_NB_REAL_MODEL") or next(
        (n for n, caps in models.items() if "completion" in caps), ""
    )
    if not model:
        pytest.fail("OLLAMA_NB_REAL_HOST is set but no completion model: set OLLAMA_NB_REAL_MODEL")
    parallel = os.environ.get("OLLAMA_NB_REAL_NUM_PARALLEL")
    yield Target(url, None, model, models, int(parallel) if parallel else None, timeout=300)


@pytest.fixture(autouse=True)
def fresh(target: Target) -> None:
    if target.server is not None:
        target.server.reset()


@pytest.fixture
def http(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.url, timeout=target.timeout) as client:
        yield client


def short(n: int) -> dict[str, Any]:
    """Options for a short, repeatable answer on any server."""
    return {"num_predict": n, "temperature": 0, "seed": 1}


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


# -- a request on a plain socket, read with timestamps ----------------------------------------


class Raw:
    """One HTTP/1.1 request on its own socket: when each byte came, and the chunks."""

    def __init__(self, url: str, path: str, body: dict[str, Any] | None, method: str = "POST"):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=10)
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        self.sock = sock
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {parts.path}{path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.sent_at = time.monotonic()
        sock.sendall(head.encode() + data)
        self.buffer = b""
        self.first_byte_at: float | None = None
        self.status = 0
        self.headers: dict[str, str] = {}

    def readable(self, timeout: float) -> bool:
        return bool(self.buffer) or bool(select.select([self.sock], [], [], timeout)[0])

    def _more(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.sock], [], [], left)[0]:
            raise TimeoutError("no bytes in time")
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        if self.first_byte_at is None:
            self.first_byte_at = time.monotonic()
        self.buffer += data

    def read_head(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            self._more(deadline)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in fields:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def chunks(self, timeout: float) -> Iterator[tuple[float, bytes]]:
        """(arrival time, data) of each HTTP chunk, until the last one."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" not in self.buffer:
                self._more(deadline)
            size_line, rest = self.buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                self._more(deadline)
                size_line, rest = self.buffer.split(b"\r\n", 1)
            self.buffer = rest[size + 2 :]
            if size == 0:
                return
            yield time.monotonic(), rest[:size]

    def close(self) -> None:
        self.sock.close()


# -- framing ---------------------------------------------------------------------------------


def test_stream_is_ndjson_one_line_per_chunk(target: Target) -> None:
    raw = Raw(
        target.url, "/api/generate", {"model": target.model, "prompt": "Hi.", "options": short(6)}
    )
    try:
        raw.read_head(target.timeout)
        assert raw.status == 200
        assert raw.headers["content-type"] == "application/x-ndjson"
        assert raw.headers["transfer-encoding"] == "chunked"
        chunks = [data for _, data in raw.chunks(target.timeout)]
    finally:
        raw.close()
    assert chunks and all(data.endswith(b"\n") for data in chunks)  # whole lines per chunk
    lines = [json.loads(line) for data in chunks for line in data.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]


def _check_final(final: dict[str, Any], model: str) -> None:
    assert final["done"] is True and final["model"] == model
    assert final["done_reason"] in ("stop", "length")
    assert ISO.match(final["created_at"]), final["created_at"]
    for name in ("total_duration", "load_duration", "prompt_eval_count",
                 "prompt_eval_duration", "eval_count", "eval_duration"):  # fmt: skip
        if name in final:  # optional in the protocol; integers when present
            assert isinstance(final[name], int) and final[name] >= 0, name
    assert final["eval_count"] >= 1 and final["eval_duration"] > 0
    assert final["total_duration"] >= final["load_duration"]


def test_generate_chunks_and_final_fields(target: Target, http: httpx.Client) -> None:
    body = {"model": target.model, "prompt": "Say hi.", "think": False, "options": short(6)}
    if "thinking" not in target.models.get(target.model, []):
        del body["think"]
    lines = lines_of(http.post("/api/generate", json=body))
    for chunk in lines[:-1]:
        assert chunk["done"] is False and "done_reason" not in chunk
        assert isinstance(chunk["response"], str) and chunk["model"] == target.model
        assert ISO.match(chunk["created_at"])
    final = lines[-1]
    _check_final(final, target.model)
    assert final["response"] == ""  # the text came in the chunks
    assert all(isinstance(i, int) for i in final.get("context", []))


def test_chat_chunks_and_final_fields(target: Target, http: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    body = {"model": target.model, "messages": messages, "options": short(6)}
    lines = lines_of(http.post("/api/chat", json=body))
    for chunk in lines:
        assert chunk["message"]["role"] == "assistant"
        assert isinstance(chunk["message"]["content"], str)
    _check_final(lines[-1], target.model)
    assert "context" not in lines[-1]


def test_num_predict_gives_length(target: Target, http: httpx.Client) -> None:
    body = {"model": target.model, "prompt": "Count to one hundred.", "options": short(1)}
    final = lines_of(http.post("/api/generate", json=body))[-1]
    assert final["done_reason"] == "length" and final["eval_count"] == 1


def test_stream_false_is_one_json_object(target: Target, http: httpx.Client) -> None:
    body = {"model": target.model, "prompt": "Hi.", "stream": False, "options": short(4)}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    whole = response.json()
    assert whole["done"] is True and isinstance(whole["response"], str) and whole["response"]


# -- load, unload, keep_alive and /api/ps ------------------------------------------------------


def _parse_time(text: str) -> datetime:
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def _ps(http: httpx.Client, model: str) -> dict[str, Any] | None:
    base = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
    found = [m for m in http.get("/api/ps").json()["models"] if m["name"] == base]
    return found[0] if found else None


def _wait_unloaded(http: httpx.Client, model: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _ps(http, model) is not None:
        assert time.monotonic() < deadline, f"{model} still in /api/ps after {timeout} s"
        time.sleep(0.1)


@pytest.mark.parametrize("endpoint", ["/api/generate", "/api/chat"])
def test_load_then_unload(target: Target, http: httpx.Client, endpoint: str) -> None:
    empty: dict[str, Any] = {"messages": []} if endpoint == "/api/chat" else {}
    loaded = http.post(endpoint, json={"model": target.model, "keep_alive": "10m", **empty})
    assert loaded.status_code == 200 and loaded.headers["content-type"].startswith(
        "application/json"
    )
    assert loaded.json()["done"] is True and loaded.json()["done_reason"] == "load"
    entry = _ps(http, target.model)
    assert entry is not None
    left = _parse_time(entry["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10, seconds=5)
    assert entry["size"] > 0 and entry["context_length"] > 0 and "size_vram" in entry

    unloaded = http.post(endpoint, json={"model": target.model, "keep_alive": 0, **empty})
    assert unloaded.json()["done_reason"] == "unload"
    _wait_unloaded(http, target.model, 30)


def test_keep_alive_forms(target: Target, http: httpx.Client) -> None:
    def expires_in(keep_alive: object) -> timedelta:
        http.post("/api/generate", json={"model": target.model, "keep_alive": keep_alive})
        entry = _ps(http, target.model)
        assert entry is not None
        return _parse_time(entry["expires_at"]) - datetime.now(timezone.utc)

    assert timedelta(seconds=590) < expires_in(600) <= timedelta(seconds=605)  # seconds
    assert timedelta(minutes=89) < expires_in("1h30m") <= timedelta(minutes=90, seconds=5)
    assert expires_in(-1) > timedelta(days=365 * 100)  # never
    assert timedelta(seconds=590) < expires_in("10m") <= timedelta(seconds=605)
    http.post("/api/generate", json={"model": target.model, "keep_alive": "1s"})
    _wait_unloaded(http, target.model, 30)  # expiry


# -- errors: a status and a JSON body before any output ----------------------------------------

ERRORS = [
    ("unknown model, generate", "/api/generate", {"model": UNKNOWN, "prompt": "x"}, 404,
     f"model '{UNKNOWN}' not found"),
    ("unknown model, chat", "/api/chat", {"model": UNKNOWN, "messages": []}, 404,
     f"model '{UNKNOWN}' not found"),
    ("no model, generate", "/api/generate", {"prompt": "x"}, 404, "model '' not found"),
    ("no model, chat", "/api/chat", {"messages": []}, 400, "model is required"),
    ("invalid name", "/api/generate", {"model": "bad name!", "prompt": "x"}, 400,
     "invalid model name"),
    ("unknown model, show", "/api/show", {"model": UNKNOWN}, 404,
     f"model '{UNKNOWN}:latest' not found"),
    ("pull, invalid name", "/api/pull", {"model": "bad name!"}, 400, "invalid model name"),
    ("pull, no name", "/api/pull", {}, 400, "invalid model name"),
    ("think: a bad level", "/api/generate", {"model": "MODEL", "prompt": "x", "think": "extreme"},
     400, 'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or'
     " false)"),
    ("think: a number", "/api/generate", {"model": "MODEL", "prompt": "x", "think": 1}, 400,
     'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
    ("stop as a string", "/api/generate",
     {"model": "MODEL", "prompt": "x", "options": {"stop": "\n"}}, 500,
     'option "stop" must be of type array'),
    ("num_predict as a string", "/api/generate",
     {"model": "MODEL", "prompt": "x", "options": {"num_predict": "5"}}, 500,
     'option "num_predict" must be of type integer'),
    ("keep_alive without unit", "/api/generate", {"model": "MODEL", "keep_alive": "10"}, 400,
     'time: missing unit in duration "10"'),
    ("keep_alive a bool", "/api/generate", {"model": "MODEL", "keep_alive": True}, 400,
     "Unsupported type: 'bool'"),
    ("prompt a number", "/api/generate", {"model": "MODEL", "prompt": 5}, 400,
     "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    ("image with a data: prefix", "/api/generate",
     {"model": "MODEL", "prompt": "x", "images": ["data:image/png;base64,AAAA"]}, 400,
     "illegal base64 data at input byte 4"),
    ("embed, bad input", "/api/embed", {"model": "MODEL", "input": [1]}, 400, "invalid input type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_status_and_body(
    target: Target, http: httpx.Client, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    if body.get("model") == "MODEL":
        body = {**body, "model": target.model}
    response = http.post(path, json=body)
    assert (response.status_code, response.json()) == (status, {"error": message})
    assert response.headers["content-type"].startswith("application/json")


def test_missing_body(http: httpx.Client) -> None:
    response = http.post("/api/generate")
    assert (response.status_code, response.json()) == (400, {"error": "missing request body"})


def test_think_on_a_model_that_cannot(target: Target, http: httpx.Client) -> None:
    model = target.with_capability("completion", without="thinking")
    response = http.post("/api/generate", json={"model": model, "prompt": "x", "think": True})
    assert (response.status_code, response.json()) == (
        400, {"error": f'"{model}" does not support thinking'}
    )  # fmt: skip


def test_wrong_path_and_method(http: httpx.Client) -> None:
    wrong = http.post("/generate", json={"model": "x"})
    assert (wrong.status_code, wrong.text) == (404, "404 page not found")
    assert wrong.headers["content-type"].startswith("text/plain")
    method = http.get("/api/generate")
    assert (method.status_code, method.text) == (405, "405 method not allowed")
    assert http.get("/").text.startswith("Ollama is running")
    assert http.head("/").status_code == 200
    assert isinstance(http.get("/api/version").json()["version"], str)


def test_error_before_output_is_a_status(target: Target, http: httpx.Client) -> None:
    server = target.standin("error_after=0 makes the runner fail before its first token")
    server.configure(error_after=0, error="runner failed")
    response = http.post("/api/generate", json={"model": "stand-in", "prompt": "x"})
    assert (response.status_code, response.json()) == (500, {"error": "runner failed"})
    server.configure(error_after=2)
    lines = lines_of(http.post("/api/generate", json={"model": "stand-in", "prompt": "x"}))
    assert len(lines) == 3 and lines[-1] == {"error": "runner failed"}  # after output: a line


def test_images_for_a_model_without_vision(target: Target, http: httpx.Client) -> None:
    model = target.with_capability("completion", without="vision")
    image = base64.b64encode(make_png(8, 8)).decode()
    body = {"model": model, "prompt": "What is this?", "images": [image], "options": short(4)}
    response = http.post("/api/generate", json=body)
    # Real servers word it in their runner, and versions differ; it is an error, not a 200.
    assert response.status_code in (400, 500) and "image" in response.json()["error"]
    if not target.real:
        assert response.json() == {"error": "this model is missing data required for image input"}


# -- tools (api.Tool, api.ToolCall; /api/chat streams each parsed call) ------------------------

ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two whole numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def test_tools_for_a_model_without_tools(target: Target, http: httpx.Client) -> None:
    model = target.with_capability("completion", without="tools")
    body = {"model": model, "messages": [{"role": "user", "content": "Add 2 and 3."}],
            "tools": [ADD_TOOL]}  # fmt: skip
    response = http.post("/api/chat", json=body)
    assert response.status_code == 400
    assert response.json()["error"].endswith(" does not support tools")


def _tool_round(target: Target, http: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    model = target.with_capability("tools")
    prompt = "call: add(a=2, b=3)" if not target.real else "Use the add tool to add 2 and 3."
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "tools": [ADD_TOOL], "options": {"temperature": 0, "seed": 1}}  # fmt: skip
    lines = lines_of(http.post("/api/chat", json=body))
    calls = [c for chunk in lines for c in chunk["message"].get("tool_calls") or []]
    if not calls:
        pytest.skip(f"{model} answered without calling the tool")
    for chunk in lines:
        if chunk["message"].get("tool_calls"):
            assert chunk["done"] is False and chunk["message"]["content"] == ""
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"
    return model, calls


def test_tool_calls_stream_in_chunks_with_index_and_id(target: Target, http: httpx.Client) -> None:
    _, calls = _tool_round(target, http)
    for index, call in enumerate(calls):
        function = call["function"]
        assert function["name"] == "add" and function["index"] == index
        assert isinstance(function["arguments"], dict)
        if "id" in call:  # newer servers: call_ and 8 lowercase letters or digits
            assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    if not target.real:
        assert calls[0]["function"]["arguments"] == {"a": 2, "b": 3}


def test_tool_results_go_back_as_tool_messages(target: Target, http: httpx.Client) -> None:
    model, calls = _tool_round(target, http)
    messages = [
        {"role": "user", "content": "call: add(a=2, b=3)"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "5", "tool_name": "add", "tool_call_id": calls[0].get("id")},
    ]
    body = {"model": model, "messages": messages, "tools": [ADD_TOOL], "options": short(8)}
    lines = lines_of(http.post("/api/chat", json=body))
    assert lines[-1]["done"] is True
    text = "".join(chunk["message"]["content"] for chunk in lines)
    if not target.real:
        assert text == "[stand-in] tool results: add → 5"


# -- thinking ----------------------------------------------------------------------------------


def test_thinking_is_on_by_default_and_placed_per_endpoint(
    target: Target, http: httpx.Client
) -> None:
    model = target.with_capability("thinking")
    options = short(64 if target.real else 40)
    generated = lines_of(
        http.post("/api/generate", json={"model": model, "prompt": "2+2?", "options": options})
    )
    assert any(line.get("thinking") for line in generated)  # no "think": it thinks
    assert all("message" not in line for line in generated)
    first_answer = next((i for i, line in enumerate(generated) if line["response"]), len(generated))
    assert all(not line.get("thinking") for line in generated[first_answer:])

    messages = [{"role": "user", "content": "2+2?"}]
    chatted = lines_of(
        http.post("/api/chat", json={"model": model, "messages": messages, "options": options})
    )
    assert any(line["message"].get("thinking") for line in chatted)
    assert all("thinking" not in line for line in chatted)

    body = {"model": model, "prompt": "2+2?", "think": False, "options": short(8)}
    assert not any(line.get("thinking") for line in lines_of(http.post("/api/generate", json=body)))


# -- models: tags, show, embed, images ----------------------------------------------------------


def test_tags_shape_newest_first(http: httpx.Client) -> None:
    models = http.get("/api/tags").json()["models"]
    assert models
    for model in models:
        assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(model)
        assert isinstance(model["capabilities"], list) and model["capabilities"]
        details = model["details"]
        assert {"format", "family", "families", "parameter_size", "quantization_level"} <= set(
            details
        )
        assert isinstance(details["context_length"], int)
    dates = [_parse_time(m["modified_at"]) for m in models]
    assert [int(d.timestamp()) for d in dates] == sorted(
        (int(d.timestamp()) for d in dates), reverse=True
    )


def test_show_shape(target: Target, http: httpx.Client) -> None:
    shown = http.post("/api/show", json={"model": target.model}).json()
    assert "completion" in shown["capabilities"]
    info = shown["model_info"]
    arch = info["general.architecture"]
    assert isinstance(info[f"{arch}.context_length"], int) and info[f"{arch}.context_length"] > 0
    assert {"format", "family", "parameter_size", "quantization_level"} <= set(shown["details"])
    for name in ("license", "template", "parameters", "modelfile"):
        assert isinstance(shown.get(name, ""), str)
    if not target.real:
        assert shown["license"] and shown["template"] and shown["parameters"]


def test_embed(target: Target, http: httpx.Client) -> None:
    model = target.with_capability("embedding")
    one = http.post("/api/embed", json={"model": model, "input": "The sky is blue."}).json()
    assert one["model"] == model and len(one["embeddings"]) == 1
    [vector] = one["embeddings"]
    assert all(isinstance(v, float) for v in vector)
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, abs_tol=1e-3)
    two = http.post("/api/embed", json={"model": model, "input": ["The sky is blue.", "Grass."]})
    assert two.json()["embeddings"][0] == vector  # deterministic
    assert len(two.json()["embeddings"]) == 2 and two.json()["prompt_eval_count"] > 0
    empty = http.post("/api/embed", json={"model": model, "input": ""}).json()
    assert empty["embeddings"] == []


def test_embed_with_a_completion_model(target: Target, http: httpx.Client) -> None:
    target.standin("real servers differ: some give vectors from a completion model, some refuse")
    response = http.post("/api/embed", json={"model": "stand-in", "input": "x"})
    assert (response.status_code, response.json()) == (
        400, {"error": "this model does not support embeddings"}
    )  # fmt: skip


def test_images_for_a_vision_model(target: Target, http: httpx.Client) -> None:
    model = target.with_capability("vision")
    image = base64.b64encode(make_png(32, 24)).decode()
    body = {"model": model, "prompt": "Describe it.", "images": [image], "stream": False,
            "options": short(8)}  # fmt: skip
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200 and response.json()["response"]
    if target.server is not None:
        assert response.json()["response"].startswith("[stand-in] saw 1 image: 32x24 PNG.")
        [record] = target.server.requests
        assert [(i.format, i.width, i.height, i.size) for i in record.images] == [
            ("PNG", 32, 24, len(make_png(32, 24)))
        ]


# -- pull ----------------------------------------------------------------------------------------


def test_pull_progress_shape(target: Target, http: httpx.Client) -> None:
    if target.real and os.environ.get("OLLAMA_NB_REAL_PULL") != "1":
        pytest.skip("pulling contacts the model registry: set OLLAMA_NB_REAL_PULL=1")
    name = target.model if target.real else "conformance-tiny"
    lines = lines_of(http.post("/api/pull", json={"model": name}))
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    layers = [line for line in lines if "digest" in line]
    assert layers
    for line in layers:
        assert line["status"] == f"pulling {line['digest'].removeprefix('sha256:')[:12]}"
        assert isinstance(line["total"], int) and 0 <= line.get("completed", 0) <= line["total"]
    assert {"status": "verifying sha256 digest"} in lines and {
        "status": "writing manifest"
    } in lines


def test_pull_unknown_model_streams_then_errors(target: Target, http: httpx.Client) -> None:
    if target.real and os.environ.get("OLLAMA_NB_REAL_PULL") != "1":
        pytest.skip("pulling contacts the model registry: set OLLAMA_NB_REAL_PULL=1")
    response = http.post("/api/pull", json={"model": UNKNOWN})
    assert response.status_code == 200  # output began before the registry said no
    lines = lines_of(response)
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1]["error"].startswith("pull model manifest: ")


# -- disconnects and queueing ---------------------------------------------------------------------


def test_disconnect_stops_generation(target: Target, http: httpx.Client) -> None:
    server = target.standin("the stand-in's records show what it sent after the close")
    server.configure(token_interval=0.05)
    with http.stream("POST", "/api/generate", json={"model": "stand-in", "prompt": "x"}) as r:
        lines = r.iter_lines()
        next(lines), next(lines)
    closed_at = time.monotonic()
    record = server.wait_for_request()
    assert record.wait_closed(2) and record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.5 and record.chunks_after_disconnect == 0


def _parallel(target: Target) -> int:
    if target.num_parallel is None:
        pytest.skip("set OLLAMA_NB_REAL_NUM_PARALLEL to the server's OLLAMA_NUM_PARALLEL")
    return target.num_parallel


def _long(target: Target, n: int) -> dict[str, Any]:
    """A request that takes a while: `n` tokens (the stand-in's knobs pace it; a real
    server ignores options it does not know)."""
    options = {**short(n), "standin_tokens": n, "standin_token_interval": 0.02}
    body: dict[str, Any] = {"model": target.model, "prompt": "Tell a long story."}
    if "thinking" in target.models.get(target.model, []):
        body["think"] = False
    return {**body, "options": options}


def _read_head_in_thread(raw: Raw, timeout: float) -> threading.Thread:
    """Read the head in a thread, so that its first_byte_at is the time bytes came."""
    thread = threading.Thread(target=raw.read_head, args=(timeout,), daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _every_slot_taken(
    target: Target, body: dict[str, Any], *, first_chunk: bool = False
) -> Iterator[list[Raw]]:
    """One streaming request per slot of the server (its head read, and its first chunk
    with `first_chunk`); every request in the list, added ones too, is closed on exit."""
    opened = [Raw(target.url, "/api/generate", body) for _ in range(_parallel(target))]
    try:
        for raw in opened:
            raw.read_head(target.timeout)
            if first_chunk:
                next(raw.chunks(target.timeout))
        yield opened
    finally:
        for raw in opened:
            raw.close()


def test_a_queued_request_receives_nothing_until_its_turn(target: Target) -> None:
    body = _long(target, 40)
    with _every_slot_taken(target, body) as opened:
        running = list(opened)
        waiting = Raw(target.url, "/api/generate", body)
        opened.append(waiting)
        reader = _read_head_in_thread(waiting, target.timeout)
        ends = [max(t for t, _ in raw.chunks(target.timeout)) for raw in running]
        reader.join(target.timeout)
        assert waiting.status == 200 and waiting.first_byte_at is not None
        # Not even headers before a running request ended (0.05 s: when we noticed its end).
        assert waiting.first_byte_at >= min(ends) - 0.05
    if target.server is not None:
        records = target.server.requests
        assert [r.queued for r in records] == [False] * len(running) + [True]
        assert records[-1].scheduled_at is not None and records[-1].queued_at is not None


def test_disconnect_frees_the_slot(target: Target) -> None:
    """A client that leaves stops its generation: the next queued request starts at once."""
    body = _long(target, 4000)
    with _every_slot_taken(target, body, first_chunk=True) as running:
        waiting = Raw(target.url, "/api/generate", {**body, "options": short(4)})
        running.append(waiting)
        assert not waiting.readable(0.3)  # 4000 tokens are still coming for the others
        running[0].close()
        left_at = time.monotonic()
        waiting.read_head(60 if target.real else 5)
        assert waiting.status == 200 and waiting.first_byte_at is not None
        assert waiting.first_byte_at - left_at < (30 if target.real else 2)


def test_queue_details(target: Target) -> None:
    server = target.standin("num_parallel and max_queue knobs")
    server.configure(token_interval=0.02, tokens=30, max_queue=2)
    body = {"model": "stand-in", "prompt": "x"}
    first = Raw(server.url, "/api/generate", body)
    first.read_head(5)
    queued = [Raw(server.url, "/api/generate", body) for _ in range(2)]
    server.wait_for_request(), server.wait_for_request(), server.wait_for_request()
    deadline = time.monotonic() + 5
    while sum(r.queued for r in server.requests) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    refused = httpx.post(f"{server.url}/api/generate", json=body, timeout=5)
    assert refused.status_code == 503
    assert refused.json() == {
        "error": "server busy, please try again.  maximum pending requests exceeded"
    }
    queued[0].close()  # leaves the queue: its slot in the queue is free again
    record = server.requests[1]
    assert record.wait_closed(2) and record.scheduled_at is None and record.queue_position == 0
    third = Raw(server.url, "/api/generate", body)
    try:
        list(first.chunks(10))
        for raw in (queued[1], third):
            raw.read_head(10)
            assert raw.status == 200
            list(raw.chunks(10))
    finally:
        for raw in (first, *queued, third):
            raw.close()
    generated = [r for r in server.requests if r.path == "/api/generate"]
    assert all(r.wait_closed(5) for r in generated)  # the server may still be finishing up
    done = [r for r in generated if r.completed]
    starts = sorted(r.scheduled_at for r in done if r.scheduled_at is not None)
    ends = sorted(r.finished_at for r in done if r.finished_at is not None)
    assert len(starts) == 3 and all(s >= e - 0.001 for s, e in zip(starts[1:], ends, strict=False))

    server.reset()
    assert server.knobs["num_parallel"] == 1 and server.knobs["max_queue"] == 512
    server.configure(num_parallel=2, token_interval=0.02, tokens=20)
    pair = [Raw(server.url, "/api/generate", body) for _ in range(2)]
    try:
        for raw in pair:
            raw.read_head(5)  # both at once
    finally:
        for raw in pair:
            raw.close()
    assert not any(r.queued for r in server.requests)


def test_headers_wait_for_the_model(target: Target) -> None:
    server = target.standin("first_chunk_delay stands for a model load")
    server.configure(first_chunk_delay=0.4)
    raw = Raw(server.url, "/api/generate", {"model": "stand-in", "prompt": "x"})
    try:
        raw.read_head(5)
        assert raw.first_byte_at is not None and raw.first_byte_at - raw.sent_at >= 0.4
        arrived, data = next(raw.chunks(5))
        assert json.loads(data)["response"].startswith("[stand-in]")
        assert arrived - raw.first_byte_at < 0.2  # the first chunk came with the headers
    finally:
        raw.close()


def test_queue_is_first_in_first_out(target: Target) -> None:
    """FIFO: with one slot, requests are served in the order they arrived."""
    server = target.standin("order of arrival is only known to the stand-in's records")
    server.configure(token_interval=0.01, tokens=5)
    order: list[int] = []
    lock = threading.Lock()

    def ask(index: int) -> None:
        httpx.post(
            f"{server.url}/api/generate",
            json={"model": "stand-in", "prompt": str(index)},
            timeout=10,
        )
        with lock:
            order.append(index)

    threads = []
    for index in range(4):
        thread = threading.Thread(target=ask, args=(index,))
        thread.start()
        threads.append(thread)
        server.wait_for_request(timeout=5)  # arrived before the next is sent
    for thread in threads:
        thread.join(15)
    records = [r for r in server.requests if r.path == "/api/generate"]
    prompts = [r.body["prompt"] for r in sorted(records, key=lambda r: r.scheduled_at or 0)]
    assert prompts == ["0", "1", "2", "3"]
