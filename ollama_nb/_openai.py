"""OpenAI's `/v1` API (llama.cpp, vLLM, LM Studio, Ollama's `/v1`) as a `Protocol`.

Requests described in Ollama's terms become OpenAI's: `/api/generate` and `/api/chat`
→ `POST {host}/chat/completions` streamed as Server-Sent Events with the usage in the
last event; `/api/embed` → `/embeddings`; `/api/tags` → `/models`. The events become
Ollama-shaped chunks: text and thinking (`reasoning_content` or `reasoning` deltas) as
they come, then one final `done` chunk at `[DONE]` with the usage
(`prompt_eval_count`, `eval_count`), `finish_reason` as `done_reason`, and llama.cpp's
timings where sent. Errors in OpenAI's JSON shape become the package's one-line errors.
Tools: `tools` go as they are; `delta.tool_calls` fragments are joined into one chunk
with Ollama's `message.tool_calls` when the choice finishes; the calls and the `tool`
messages sent back take OpenAI's shape (arguments a JSON string, paired by id).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import Any, Final

from ._exceptions import OllamaError, OllamaModelNotFoundError, OllamaResponseError
from ._ndjson import load_object, preview
from ._sse import EventDecoder

# Where an Ollama endpoint has no OpenAI counterpart, the command the user typed.
NO_COUNTERPART: Final = {
    "/api/ps": "%ollama ps",
    "/api/pull": "%ollama pull",
    "/api/show": "%ollama show",
    "/api/version": "a server version",
    "/api/delete": "deleting a model",
}
# Ollama's option names that OpenAI spells differently; the rest go top-level as they are.
RENAMED_OPTIONS: Final = {"num_predict": "max_tokens"}
_IMAGE_TYPES: Final = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


def no_counterpart(what: str) -> str:
    return f"an OpenAI-compatible server has no counterpart to {what}; nothing was sent"


class OpenAIProtocol:
    name = "openai"
    stream_accept = "text/event-stream"

    def outgoing(self, path: str, payload: dict[str, Any] | None) -> tuple[str, Any]:
        if path in ("/api/generate", "/api/chat"):
            return "/chat/completions", chat_body(payload or {})
        if path == "/api/embed":
            body = payload or {}
            return "/embeddings", {"model": body.get("model"), "input": body.get("input")}
        if path == "/api/tags":
            return "/models", None
        raise OllamaError(no_counterpart(NO_COUNTERPART.get(path, path)))

    def incoming(self, path: str, answer: dict[str, Any]) -> dict[str, Any]:
        data = answer.get("data")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise OllamaResponseError(f"the server's {path_of(path)} answer has no 'data' list")
        if path == "/api/tags":
            names = [str(d.get("id") or "?") for d in data]
            return {"models": [{"name": name, "model": name} for name in names]}
        if path == "/api/embed":
            ordered = sorted(data, key=lambda d: d.get("index") or 0)
            return {"embeddings": [d.get("embedding") for d in ordered]}
        return answer

    def decoder(self, path: str) -> EventChunks:  # a `_protocol.ChunkDecoder`
        return EventChunks(chat=path == "/api/chat")

    def status_error(
        self, status: int, body: bytes, model: str, host: str, url: str, redirected: str
    ) -> OllamaError | None:
        message, code = error_fields(body)
        lowered = message.lower()
        named = "model" in lowered and ("not found" in lowered or "does not exist" in lowered)
        if status == 404 and model and (code == "model_not_found" or named):
            return OllamaModelNotFoundError(
                f"model {model!r} is not on {host} ({message}); `%ollama models` lists what"
                " it serves",
                model,
            )
        if status == 404:
            return OllamaResponseError(
                f"no OpenAI-compatible API answers at {url} (HTTP 404{redirected}: {message});"
                " check the host and its path in --host (e.g. http://host:8080/v1)",
                404,
            )
        if status in (401, 403):
            return OllamaResponseError(
                f"{host} refused the request (HTTP {status}: {message}); set $OPENAI_API_KEY"
                " (or $OLLAMA_API_KEY) in the kernel's environment to the server's key",
                status,
            )
        return OllamaResponseError(f"{host} answered HTTP {status}{redirected}: {message}", status)


OPENAI = OpenAIProtocol()


def path_of(path: str) -> str:
    return {"/api/tags": "/models", "/api/embed": "/embeddings"}.get(path, path)


def chat_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The `/chat/completions` body for an Ollama generate or chat payload."""
    if "messages" in payload:
        messages = tool_turns([_message(m) for m in payload["messages"] if isinstance(m, dict)])
    else:
        messages = []
        if payload.get("system"):
            messages.append({"role": "system", "content": payload["system"]})
        user = {"role": "user", "content": payload.get("prompt") or ""}
        messages.append(_message({**user, "images": payload.get("images") or []}))
    body: dict[str, Any] = {"model": payload.get("model"), "messages": messages}
    if payload.get("tools"):  # Ollama's tool objects are OpenAI's
        body["tools"] = payload["tools"]
    stream = payload.get("stream", True)
    body["stream"] = bool(stream)
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in (payload.get("options") or {}).items():
        body[RENAMED_OPTIONS.get(key, key)] = value
    think = payload.get("think")
    if isinstance(think, str):
        body["reasoning_effort"] = think
    fmt = payload.get("format")
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        name = fmt.get("title") if isinstance(fmt.get("title"), str) else "answer"
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(name), "schema": fmt},
        }
    return body


def _schema_name(title: str) -> str:
    # OpenAI takes a-z, A-Z, 0-9, _ and - (at most 64).
    name = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in title)
    return name[:64] or "answer"


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role") or "user"
    content = message.get("content") or ""
    if role == "tool":  # `tool_call_id` filled in by `tool_turns` where missing
        return {"role": "tool", "tool_call_id": message.get("tool_call_id"), "content": content}
    calls = message.get("tool_calls")
    if role == "assistant" and isinstance(calls, list) and calls:
        return {"role": "assistant", "content": content or None,
                "tool_calls": [_tool_call(c) for c in calls]}  # fmt: skip
    images = message.get("images") or []
    if not images:
        return {"role": role, "content": content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    return {"role": role, "content": parts}


def _tool_call(call: Any) -> dict[str, Any]:
    """An Ollama tool call (arguments an object) as OpenAI's (arguments a JSON string)."""
    function = call.get("function") if isinstance(call, dict) else None
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
    call_id = call.get("id") if isinstance(call, dict) else None
    return {"id": call_id if isinstance(call_id, str) and call_id else None, "type": "function",
            "function": {"name": function.get("name") or "", "arguments": arguments}}  # fmt: skip


def tool_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every call with an id and every tool message with its call's: OpenAI pairs them by
    id, which Ollama's calls may lack (a tool message without one takes the next call's
    of the assistant turn before it, in order)."""
    pending: list[str] = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                call["id"] = call["id"] or new_call_id()
            pending = [call["id"] for call in message["tool_calls"]]
        elif message["role"] == "tool":
            given = message["tool_call_id"]
            if isinstance(given, str) and given in pending:
                pending.remove(given)
            elif not given:
                message["tool_call_id"] = pending.pop(0) if pending else new_call_id()
    return messages


def new_call_id() -> str:
    return f"call_{secrets.token_hex(6)}"


def data_url(encoded: str) -> str:
    """A base64 image as a `data:` URL, its type read from its first bytes."""
    try:
        head = base64.b64decode(encoded[:16])
    except (binascii.Error, ValueError):
        head = b""
    kind = next((mime for magic, mime in _IMAGE_TYPES if head.startswith(magic)), "image/png")
    return f"data:{kind};base64,{encoded}"


def error_fields(body: bytes) -> tuple[str, str]:
    """(message, code) of an error body: OpenAI's `{"error": {"message", "type", "code"}}`,
    vLLM's top-level `message`, FastAPI's `detail`, Ollama's `{"error": "..."}`, or text."""
    try:
        value = json.loads(body)
    except ValueError:
        text = body[:200].decode("utf-8", errors="replace")
        return " ".join(text.split()) or "no detail", ""
    if not isinstance(value, dict):
        return "no detail", ""
    error = value.get("error", value)
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return "no detail", ""
    message = error.get("message") or error.get("detail") or error.get("type") or "no detail"
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)[:200]
    code = error.get("code")
    return " ".join(message.split()), str(code) if isinstance(code, str) else ""


class EventChunks:
    """A `/chat/completions` event stream as Ollama-shaped chunks (`/api/chat`'s with
    `chat`, else `/api/generate`'s)."""

    def __init__(self, chat: bool) -> None:
        self._events = EventDecoder()
        self._chat = chat
        self._model: str | None = None
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._timings: dict[str, Any] = {}
        self._done = False
        self._calls: dict[int, dict[str, Any]] = {}  # tool calls being assembled, by index
        self._first_at: float | None = None  # arrival of the first and the last text
        self._last_at = 0.0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in self._events.feed(data):
            self._event(event, chunks)
        return chunks

    def end(self) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in self._events.tail():
            self._event(event, chunks)
        if not self._done and self._finish is not None:
            # Some servers end the body after the finish_reason without `[DONE]`.
            self._done = True
            self._flush_calls(chunks)
            chunks.append(self._final())
        if not self._done:
            # llama-cpp-python's server fails so after its 200 (a prompt longer than its
            # context): an empty or cut stream, the reason only in its log.
            raise OllamaResponseError(
                "the server ended the stream without a finish_reason or [DONE]: it failed"
                " mid-answer (its log says why; a prompt longer than its context does this)"
            )
        return chunks

    def _event(self, data: bytes, chunks: list[dict[str, Any]]) -> None:
        if self._done:
            return
        if data[:1] != b"{" and data.strip() == b"[DONE]":
            self._done = True
            self._flush_calls(chunks)
            chunks.append(self._final())
            return
        value = load_object(data, "an event that is not JSON", "an event")
        if "error" in value:
            message, _ = error_fields(data)
            raise OllamaResponseError(f"the server reported an error mid-stream: {message}")
        model = value.get("model")
        if isinstance(model, str) and model:
            self._model = model
        usage = value.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        timings = value.get("timings")
        if isinstance(timings, dict):
            self._timings = timings
        choices = value.get("choices") or []
        if type(choices) is not list:
            raise OllamaResponseError(f"the server sent an event whose 'choices' is not a list: "
                                      f"{preview(data)}")  # fmt: skip
        for choice in choices:
            if type(choice) is not dict or choice.get("index", 0) != 0:
                continue  # one answer is asked for (n=1)
            delta = choice.get("delta") or {}
            if type(delta) is not dict:
                raise OllamaResponseError(
                    f"the server sent an event whose 'delta' is not an object: {preview(data)}"
                )
            text = delta.get("content") or ""
            thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
            if type(text) is not str or type(thinking) is not str:
                raise OllamaResponseError(
                    f"the server sent an event with text that is not a string: {preview(data)}"
                )
            if text or thinking:
                chunks.append(self._chunk(text, thinking))
                self._last_at = time.monotonic()
                if self._first_at is None:
                    self._first_at = self._last_at
            if delta.get("tool_calls") is not None:
                self._add_fragments(delta["tool_calls"], data)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self._finish = finish
                self._flush_calls(chunks)

    def _add_fragments(self, fragments: Any, data: bytes) -> None:
        """`delta.tool_calls`: the first fragment of a call has its `id` and name, the
        next ones append to its arguments (a JSON string cut anywhere)."""
        if type(fragments) is not list or not all(type(f) is dict for f in fragments):
            raise OllamaResponseError(
                f"the server sent an event whose 'tool_calls' is not a list of objects: "
                f"{preview(data)}"
            )
        for fragment in fragments:
            index = fragment.get("index")
            if type(index) is not int:  # not numbered: a new call, or the last one's rest
                fresh = fragment.get("id") or not self._calls
                index = len(self._calls) if fresh else max(self._calls)
            call = self._calls.setdefault(index, {"id": None, "name": "", "arguments": []})
            if isinstance(fragment.get("id"), str) and fragment["id"]:
                call["id"] = call["id"] or fragment["id"]
            function = fragment.get("function")
            if not isinstance(function, dict):
                continue
            if isinstance(function.get("name"), str) and not call["name"]:
                call["name"] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call["arguments"].append(arguments)
            elif isinstance(arguments, dict):  # sent whole, as an object
                call["arguments"] = [json.dumps(arguments)]

    def _flush_calls(self, chunks: list[dict[str, Any]]) -> None:
        """The assembled calls, as Ollama's /api/chat sends them, in one chunk."""
        if not self._calls:
            return
        calls = [_assembled(self._calls[i]) for i in sorted(self._calls)]
        self._calls = {}
        if self._chat:
            chunks.append({"message": {"role": "assistant", "content": "", "tool_calls": calls}})

    def _chunk(self, text: str, thinking: str) -> dict[str, Any]:
        if self._chat:
            return {"message": {"role": "assistant", "content": text, "thinking": thinking}}
        return {"response": text, "thinking": thinking}

    def _final(self) -> dict[str, Any]:
        # `tool_calls` is OpenAI's reason for an answer that asks for calls: Ollama's is
        # "stop" (the loop goes on; a reason is shown only where something cut the answer).
        reason = "stop" if self._finish in ("tool_calls", "function_call") else self._finish
        final: dict[str, Any] = {"done": True, "done_reason": reason}
        if self._model:
            final["model"] = self._model
        for ours, theirs in (("prompt_eval_count", "prompt_tokens"),
                             ("eval_count", "completion_tokens")):  # fmt: skip
            count = self._usage.get(theirs)
            if isinstance(count, int) and not isinstance(count, bool):
                final[ours] = count
        # llama.cpp's `timings` (milliseconds): what tokens/s is computed from.
        for ours, theirs in (("prompt_eval_duration", "prompt_ms"),
                             ("eval_duration", "predicted_ms")):  # fmt: skip
            ms = self._timings.get(theirs)
            if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
                final[ours] = round(ms * 1e6)
        if "eval_count" not in final and isinstance(self._timings.get("predicted_n"), int):
            final["eval_count"] = self._timings["predicted_n"]
        count = final.get("eval_count")
        if "eval_duration" not in final and self._first_at is not None and count:
            # No timings from the server (OpenAI, vLLM, Ollama's /v1): tokens/s as the
            # client saw them arrive, one token's interval added for the first.
            span = self._last_at - self._first_at
            if span > 0:  # else it all came in one read: no rate to tell
                final["eval_duration"] = round(span * 1e9 * count / max(1, count - 1))
        return final


def _assembled(call: dict[str, Any]) -> dict[str, Any]:
    """A call as Ollama's: arguments an object where they read as one, else the string
    (`_tools.read_calls` makes that the call's error, sent back to the model)."""
    text = "".join(call["arguments"])
    arguments: Any = text
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        value = None
    if isinstance(value, dict):
        arguments = value
    return {"id": call["id"] or new_call_id(),
            "function": {"name": call["name"], "arguments": arguments}}  # fmt: skip
