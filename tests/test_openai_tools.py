"""`--tools` against OpenAI-compatible servers (issue 28 point 1), against the stand-in's /v1.

The tools go out in OpenAI's request, the model's calls come back as `delta.tool_calls`
fragments (the arguments split across several events) and are assembled into the same
calls the tool loop runs with Ollama; the assistant's calls and the tool results go back
in OpenAI's shape (arguments as a JSON string, `tool_call_id`). Unit tests of the mapping
and of the assembly are at the end.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import httpx
import pytest
from kernel_driver import KernelDriver

from ollama_nb._openai import EventChunks, chat_body
from ollama_nb.testing import StandInServer

CHAT = "/v1/chat/completions"

DEFINE = textwrap.dedent('''
    ran = []

    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        ran.append(("add", a, b))
        return a + b

    def mul(a: int, b: int) -> int:
        """Multiply two whole numbers."""
        ran.append(("mul", a, b))
        return a * b
''')


def v1(server: StandInServer) -> str:
    return f"{server.url}/v1"


# -- the magic against the stand-in's /v1 -------------------------------------------------


def test_tools_run_and_their_results_go_back(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok(DEFINE)
    cell = kernel.ok(
        f"%%ollama stand-in-tools --host {v1(server)} --tools add,mul\n"
        "call: add(a=1, b=2); mul(a=3, b=4)\ncall: add(a=10, b=20)"
    )
    (record,) = cell.records()
    text = record["text/plain"]
    assert "[stand-in] tool results: add → 3; mul → 12; add → 30" in text
    assert "1. add(a=1, b=2) → 3" in text and "3. add(a=10, b=20) → 30" in text
    assert "tool_calls" not in text  # OpenAI's finish_reason is not shown as a reason
    assert kernel.value("ran") == [["add", 1, 2], ["mul", 3, 4], ["add", 10, 20]]
    calls = kernel.value("[(c.name, c.arguments, c.result, c.error) for c in _ollama.tool_calls]")
    assert calls == [
        ["add", {"a": 1, "b": 2}, "3", None],
        ["mul", {"a": 3, "b": 4}, "12", None],
        ["add", {"a": 10, "b": 20}, "30", None],
    ]
    assert kernel.value("_ollama.done_reason") == "stop"
    first, second, third = server.requests
    assert all(r.path == CHAT for r in server.requests)
    names = [t["function"]["name"] for t in first.body["tools"]]
    assert names == ["add", "mul"] and first.body["tools"][0]["type"] == "function"
    # The third request carries both rounds in OpenAI's shape.
    messages = third.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant",
                                             "tool"]  # fmt: skip
    assistant = messages[1]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert all(ids) and len(set(ids)) == 2
    assert assistant["tool_calls"][0]["type"] == "function"
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"a": 3, "b": 4}
    assert messages[2] == {"role": "tool", "tool_call_id": ids[0], "content": "3"}
    assert messages[3] == {"role": "tool", "tool_call_id": ids[1], "content": "12"}
    assert second.body["messages"] == messages[:4]


def test_malformed_arguments_go_back_to_the_model(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok(DEFINE)
    cell = kernel.ok(
        f"%%ollama stand-in-tools --host {v1(server)} --tools add\ncall malformed: add(a=1, b=2)"
    )
    (record,) = cell.records()
    answer = kernel.value("_ollama.text")
    assert answer.startswith("[stand-in] tool results: add → error: arguments are not a JSON")
    assert "\n" not in answer and "Traceback" not in record["text/plain"]
    assert kernel.value("ran") == []
    (call,) = kernel.value("[(c.name, c.error) for c in _ollama.tool_calls]")
    assert call[0] == "add" and call[1].startswith("arguments are not a JSON object: ")
    sent = server.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]


def test_the_standin_streams_arguments_in_fragments(server: StandInServer) -> None:
    body = {
        "model": "stand-in-tools",
        "messages": [{"role": "user", "content": "call: add(a=1, b=2); mul(a=30, b=40)"}],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}],
        "stream": True,
    }
    response = httpx.post(f"{v1(server)}/chat/completions", json=body, timeout=10)
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    deltas = [d for e in events for c in e["choices"] for d in c["delta"].get("tool_calls", [])]
    mul = [d["function"].get("arguments") for d in deltas if d["index"] == 1]
    pieces = [piece for piece in mul if piece]  # the first fragment has the name, no arguments
    assert len(pieces) > 1 and json.loads("".join(pieces)) == {"a": 30, "b": 40}
    assert [c["finish_reason"] for e in events for c in e["choices"]][-1] == "tool_calls"
    decoder = EventChunks(chat=True)
    chunks = decoder.feed(response.content) + decoder.end()
    (calls,) = [c["message"]["tool_calls"] for c in chunks if "tool_calls" in c.get("message", {})]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("add", {"a": 1, "b": 2}),
        ("mul", {"a": 30, "b": 40}),
    ]
    assert chunks[-1]["done_reason"] == "stop"


# -- units: the mapping and the assembly ---------------------------------------------------


def test_tool_messages_map_to_openais_shape() -> None:
    tools = [{"type": "function", "function": {"name": "add", "description": "Add.",
                                               "parameters": {"type": "object"}}}]  # fmt: skip
    body = chat_body({
        "model": "m",
        "tools": tools,
        "messages": [
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": "", "thinking": "hmm", "tool_calls": [
                {"id": "call_1", "function": {"index": 0, "name": "add", "arguments": {"a": 1}}},
                {"function": {"name": "add", "arguments": {"a": "é"}}},
            ]},
            {"role": "tool", "content": "1", "tool_name": "add", "tool_call_id": "call_1"},
            {"role": "tool", "content": "error: boom", "tool_name": "add"},
        ],
    })  # fmt: skip
    assert body["tools"] == tools
    user, assistant, first, second = body["messages"]
    assert user == {"role": "user", "content": "Go"}
    generated = assistant["tool_calls"][1]["id"]
    assert isinstance(generated, str) and generated and generated != "call_1"
    assert assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "add", "arguments": '{"a": 1}'}},
        {"id": generated, "type": "function",
         "function": {"name": "add", "arguments": '{"a": "é"}'}},
    ]}  # fmt: skip
    assert first == {"role": "tool", "tool_call_id": "call_1", "content": "1"}
    assert second == {"role": "tool", "tool_call_id": generated, "content": "error: boom"}
    assert "tools" not in chat_body({"model": "m", "prompt": "x"})


def _event(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"model": "m", "choices": [choice]}) + "\n\n"


def _fragment(index: int, arguments: str, **first: str) -> str:
    """A `delta.tool_calls` event: `first` (id, name) only in a call's first fragment."""
    function = {"arguments": arguments}
    if "name" in first:
        function["name"] = first["name"]
    entry: dict[str, Any] = {"index": index, "function": function}
    if "id" in first:
        entry["id"] = first["id"]
    return _event({"tool_calls": [entry]})


FRAGMENTS = (
    _event({"role": "assistant", "content": "Let me see. "})
    + _fragment(0, "", id="call_a", name="add")
    + _fragment(0, '{"a": 1, ')
    + _fragment(1, '{"x": ', name="mul")
    + _fragment(0, '"b": "Grüße"}')
    + _fragment(1, "3")
    + _event({}, "tool_calls")
    + 'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    + "data: [DONE]\n\n"
).encode()


@pytest.mark.parametrize("size", [1, 5, 64, len(FRAGMENTS)])
def test_tool_call_fragments_are_assembled(size: int) -> None:
    decoder = EventChunks(chat=True)
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(FRAGMENTS), size):
        chunks += decoder.feed(FRAGMENTS[start : start + size])
    chunks += decoder.end()
    text, calls, final = chunks
    assert text["message"]["content"] == "Let me see. "
    first, second = calls["message"]["tool_calls"]
    assert first == {"id": "call_a", "function": {"name": "add",
                                                  "arguments": {"a": 1, "b": "Grüße"}}}  # fmt: skip
    # No id from the server: one is made, for the tool message to name; arguments that
    # are not JSON stay the string, for the loop to refuse in one line.
    assert second["id"] and second["id"] != "call_a"
    assert second["function"] == {"name": "mul", "arguments": '{"x": 3'}
    assert final["done"] is True and final["done_reason"] == "stop" and final["eval_count"] == 3


def test_calls_are_kept_when_the_stream_ends_without_a_finish_reason() -> None:
    decoder = EventChunks(chat=True)
    body = _event({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})
    chunks = decoder.feed(body.encode() + b"data: [DONE]\n\n") + decoder.end()
    assert chunks[0]["message"]["tool_calls"] == [
        {"id": "c", "function": {"name": "f", "arguments": {}}}
    ]
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] is None


def test_a_bad_tool_call_delta_is_one_readable_error() -> None:
    from ollama_nb._exceptions import OllamaResponseError

    with pytest.raises(OllamaResponseError, match="tool_calls") as caught:
        EventChunks(chat=True).feed(_event({"tool_calls": {"index": 0}}).encode())
    assert "\n" not in str(caught.value)


def test_chat_keeps_the_tool_turns_in_openais_shape(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok(DEFINE)
    kernel.ok("%ollama reset")
    try:
        line = f"%%ollama stand-in-tools --host {v1(server)} --tools add --chat\n"
        kernel.ok(line + "call: add(a=2, b=3)")
        kernel.ok(line + "And now?")
        messages = server.last.body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
        (call,) = messages[1]["tool_calls"]
        assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
        assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "5"}
        assert messages[3]["content"] == "[stand-in] tool results: add → 5"
        assert kernel.value("_ollama.text") == "[stand-in] tool results: none"
    finally:
        kernel.ok("%ollama reset")
