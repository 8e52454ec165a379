"""OpenAI's `/v1` endpoints of the stand-in, as Ollama serves them: a translation layer.

Ollama implements `/v1/chat/completions`, `/v1/models` and `/v1/embeddings` as a
middleware around its own handlers (`openai/openai.go`): the OpenAI request becomes an
Ollama request, and each chunk the handler writes is rewritten into OpenAI's shape on its
way out. The stand-in does the same, so every knob (speed, stalls, drops, error lines,
malformed lines, split UTF-8, queueing, `status`) applies to `/v1` as it does to
`/api/*`, counted in the same chunks. Knobs come as top-level `standin_*` fields of the
request (a client passes unknown fields through), or as usual from the constructor.

Shapes: a streamed chat answer is Server-Sent Events (`data: {chat.completion.chunk}`),
the `finish_reason` in a chunk of its own, then with `stream_options.include_usage` a
chunk with empty `choices` and the `usage`, then `data: [DONE]`. Errors are
`{"error": {"message", "type", "param", "code"}}`; an unknown model is a 404 with
`code: "model_not_found"`. Thinking is streamed as `reasoning` deltas (Ollama's name).
Tool calls (``stand-in-tools``) are streamed as OpenAI streams them: a delta with the
call's `index`, `id` and name, then its arguments string in several pieces, and
`finish_reason: "tool_calls"`; the calls and `tool` messages that come back are
translated to Ollama's shape (a tool message's `tool_name` from its `tool_call_id`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any, Final

from ._fields import FieldError
from ._http import Responder
from ._knobs import OPTION_PREFIX
from ._stream import MALFORMED_LINE, encode_json

SSE_TYPE: Final = "text/event-stream"
ROUTES: Final = ("/v1/chat/completions", "/v1/models", "/v1/embeddings")
# OpenAI's sampling fields that are Ollama options under the same name.
_SAME_OPTIONS: Final = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_EFFORTS: Final = ("low", "medium", "high", "max")


def is_openai(path: str) -> bool:
    return path.startswith("/v1/")


def to_ollama(path: str, body: Any) -> dict[str, Any]:
    """The Ollama request a `/v1` body stands for; FieldError (400) where it cannot be."""
    if not isinstance(body, dict):
        return {}
    if path == "/v1/embeddings":
        request = {"model": body.get("model"), "input": body.get("input")}
        if body.get("dimensions") is not None:
            request["dimensions"] = body["dimensions"]
        return _with_knobs(request, body)
    if path != "/v1/chat/completions":
        return {}
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise FieldError(400, "invalid message format: 'messages' must be a non-empty list")
    options: dict[str, Any] = {}
    for name in _SAME_OPTIONS:
        if body.get(name) is not None:
            options[name] = body[name]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        options["num_predict"] = limit
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    request: dict[str, Any] = {
        "model": body.get("model"),
        "messages": _tool_names([_message(m) for m in messages]),
        "stream": body.get("stream") is True,
        "options": options,
    }
    if body.get("tools"):  # OpenAI's tool objects are Ollama's
        request["tools"] = body["tools"]
    fmt = _format(body.get("response_format"))
    if fmt is not None:
        request["format"] = fmt
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort == "none":
            request["think"] = False
        elif effort in _EFFORTS:
            request["think"] = effort
        else:
            raise FieldError(400, f"invalid reasoning_effort: {effort!r}")
    return _with_knobs(request, body)


def _with_knobs(request: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    knobs = {k: v for k, v in body.items() if k.startswith(OPTION_PREFIX)}
    if knobs:
        request["options"] = {**(request.get("options") or {}), **knobs}
    return request


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise FieldError(400, "invalid message format")
    content = message.get("content")
    text, images = content, []
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text") or ""))
            elif kind == "image_url":
                images.append(_image(part.get("image_url")))
            else:
                raise FieldError(400, "invalid message format: unknown content part")
        text = "\n".join(texts)
    elif content is not None and not isinstance(content, str):
        raise FieldError(400, "invalid message content type")
    result: dict[str, Any] = {"role": message.get("role") or "user", "content": text or ""}
    if images:
        result["images"] = images
    if message.get("tool_calls"):
        result["tool_calls"] = [_tool_call(c) for c in message["tool_calls"]]
    if isinstance(message.get("tool_call_id"), str):
        result["tool_call_id"] = message["tool_call_id"]
    return result


def _tool_call(call: Any) -> dict[str, Any]:
    """OpenAI's call (arguments a JSON string) as Ollama's (`api.ToolCall`, an object)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        raise FieldError(400, "invalid tool call: 'function.arguments' must be a string")
    try:
        arguments = json.loads(function["arguments"])
    except ValueError:
        raise FieldError(400, "invalid tool call arguments: not JSON") from None
    return {"id": call.get("id"),
            "function": {"name": function.get("name"), "arguments": arguments}}  # fmt: skip


def _tool_names(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tool message's `tool_name`, from the call its `tool_call_id` answers."""
    names: dict[Any, Any] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
        if message["role"] == "tool" and "tool_call_id" in message:
            message["tool_name"] = names.get(message["tool_call_id"])
    return messages


def _image(value: Any) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise FieldError(400, "invalid image input: only base64 data URLs are taken")
    data = url.partition(";base64,")[2]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(400, "invalid image input: not base64") from None
    return data


def _format(value: Any) -> Any:
    if not isinstance(value, dict) or value.get("type") in (None, "text"):
        return None
    if value["type"] == "json_object":
        return "json"
    if value["type"] == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    raise FieldError(400, f"invalid response_format: {json.dumps(value)[:80]}")


def error_body(status: int, message: str) -> dict[str, Any]:
    lowered = message.lower()
    missing = status == 404 and "model" in lowered and "not found" in lowered
    kind = "invalid_request_error" if status < 500 else "api_error"
    return {
        "error": {
            "message": message,
            "type": "not_found_error" if missing else kind,
            "param": None,
            "code": "model_not_found" if missing else None,
        }
    }


class OpenAIResponder:
    """A `Responder` for a `/v1` request: what the Ollama handler writes goes out in
    OpenAI's shape (the middleware of `openai/openai.go`)."""

    def __init__(self, inner: Responder, path: str, body: Any) -> None:
        self._inner = inner
        self._path = path
        body = body if isinstance(body, dict) else {}
        self._model = str(body.get("model") or "")
        options = body.get("stream_options")
        self._usage = isinstance(options, dict) and options.get("include_usage") is True
        self._id = f"chatcmpl-{int(time.time() * 1000) % 1_000_000}"
        self._created = int(time.time())
        self._role_sent = False
        self._calls_sent = 0  # tool calls streamed: their indexes, and finish_reason
        inner.stream_type = SSE_TYPE

    @property
    def headers_sent(self) -> bool:
        return self._inner.headers_sent

    @property
    def connection_closed(self) -> bool:
        return self._inner.connection_closed

    async def send(self, status: int, body: bytes, content_type: str) -> None:
        if content_type.startswith("application/json") and body != MALFORMED_LINE:
            body = encode_json(self._whole(status, json.loads(body)))
        await self._inner.send(status, body, content_type)

    async def write_line(self, line: bytes, *, split: bool = False) -> None:
        if line == MALFORMED_LINE:
            await self._inner.write_line(b"data: " + line + b"\n", split=split)
            return
        value = json.loads(line)
        if "error" in value:
            event = error_body(500, str(value["error"]))
            await self._inner.write_line(b"data: " + encode_json(event) + b"\n", split=split)
            return
        calls = (value.get("message") or {}).get("tool_calls")
        events = self._call_events(calls) if calls and not value.get("done") else []
        events = events or [self._chunk(value)]
        if value.get("done"):
            events[0]["choices"][0]["delta"] = {}
            if self._usage:
                events.append({**self._head(), "choices": [], "usage": _usage(value)})
        data = b"".join(b"data: " + encode_json(e) + b"\n\n" for e in events)
        if value.get("done"):
            data += b"data: [DONE]\n\n"
        await self._inner.write_line(data[:-1], split=split)

    async def start_chunked(self) -> None:
        await self._inner.start_chunked()

    async def end_chunked(self) -> None:
        await self._inner.end_chunked()

    def drop(self) -> None:
        self._inner.drop()

    def _head(self, kind: str = "chat.completion.chunk") -> dict[str, Any]:
        return {"id": self._id, "object": kind, "created": self._created,
                "model": self._model, "system_fingerprint": "fp_ollama"}  # fmt: skip

    def _chunk(self, value: Mapping[str, Any]) -> dict[str, Any]:
        message = value.get("message") or {}
        delta: dict[str, Any] = {"content": message.get("content") or ""}
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        finish = _finish(value) if value.get("done") else None
        if finish == "stop" and self._calls_sent:
            finish = "tool_calls"
        return {**self._head(), "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]}  # fmt: skip

    def _call_events(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tool calls as OpenAI streams them: a delta with the id and the name, then the
        arguments in pieces (clients must join them)."""
        events = []
        for call in calls:
            index = self._calls_sent
            self._calls_sent += 1
            function = call.get("function") or {}
            first = {"index": index, "id": call.get("id"), "type": "function",
                     "function": {"name": function.get("name"), "arguments": ""}}  # fmt: skip
            delta: dict[str, Any] = {"tool_calls": [first]}
            if not self._role_sent:
                delta = {"role": "assistant", "content": None, **delta}
                self._role_sent = True
            events.append(delta)
            text = _arguments(function.get("arguments"))
            step = max(1, -(-len(text) // 3))
            for start in range(0, len(text), step):
                piece = {"index": index, "function": {"arguments": text[start : start + step]}}
                events.append({"tool_calls": [piece]})
        head = self._head()
        return [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
                for d in events]  # fmt: skip

    def _whole(self, status: int, value: Any) -> Any:
        """A one-document answer: errors, the models, embeddings, an unstreamed chat."""
        if status >= 400:
            message = value.get("error") if isinstance(value, dict) else None
            return error_body(status, str(message or "error"))
        if self._path == "/v1/models":
            return {"object": "list", "data": [_model_entry(m) for m in value.get("models", [])]}
        if self._path == "/v1/embeddings":
            data = [{"object": "embedding", "embedding": vector, "index": index}
                    for index, vector in enumerate(value.get("embeddings") or [])]  # fmt: skip
            tokens = int(value.get("prompt_eval_count") or 0)
            return {"object": "list", "data": data, "model": self._model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
        message = value.get("message") or {}
        answer: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("thinking"):
            answer["reasoning"] = message["thinking"]
        finish = _finish(value)
        if message.get("tool_calls"):
            answer["tool_calls"] = [
                {"id": c.get("id"), "type": "function",
                 "function": {"name": (c.get("function") or {}).get("name"),
                              "arguments": _arguments((c.get("function") or {}).get("arguments"))}}
                for c in message["tool_calls"]
            ]  # fmt: skip
            finish = "tool_calls" if finish == "stop" else finish
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": answer, "finish_reason": finish}],
                "usage": _usage(value)}  # fmt: skip


def _arguments(value: Any) -> str:
    """A call's arguments as OpenAI sends them: a JSON string (a string stays as it is)."""
    return value if isinstance(value, str) else json.dumps(value if value is not None else {})


def _finish(value: Mapping[str, Any]) -> str:
    return "length" if value.get("done_reason") == "length" else "stop"


def _usage(value: Mapping[str, Any]) -> dict[str, int]:
    prompt = int(value.get("prompt_eval_count") or 0)
    completion = int(value.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def _model_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    name = str(entry.get("name") or entry.get("model") or "")
    return {"id": name, "object": "model", "created": int(time.time()),
            "owned_by": "ollama_nb stand-in"}  # fmt: skip
