"""Forward mode: the stand-in's protocol, a real engine's tokens and timing.

``StandInServer(forward_to="http://127.0.0.1:8080/v1", forward_model="tiny")`` answers a
plain streamed ``/api/generate`` or ``/api/chat`` (and ``/v1/chat/completions``, which
goes through the same handler) with the tokens an OpenAI-compatible engine (llama.cpp)
streams from its ``/chat/completions``, one Ollama chunk per delta as it arrives, and a
final chunk with the measured metrics. Everything before the answer stays the stand-in's
own: the checks, model names, queueing (``num_parallel``), auth. Closing the client's
connection cancels the upstream request, so the engine sees the client go.

Only a plain answer is forwarded: a request that set a knob (a fixed ``reply``, speed,
stalls, faults, ...) or asks for thinking, tools, images, ``format`` or a code block
keeps the deterministic path, since the test that sent it depends on exact behaviour.
Without ``num_predict`` the engine is asked for ``tokens`` (the stand-in's answer length,
24) and an answer cut there ends with ``stop``, as the deterministic one does. A chat's
history is cut to fit the engine's context, oldest turns first, as Ollama cuts it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._knobs import Knobs
from ._text import CODE_REQUEST

if TYPE_CHECKING:
    from ._exchange import Exchange

# Knobs that shape scheduling or access, not the answer: a request may set them and still
# be forwarded (a batch test sets num_parallel).
_NOT_ANSWER_KNOBS: Final = frozenset(
    {"num_parallel", "max_queue", "api_key", "pull_interval", "pull_step", "pull_seconds"}
)
_DEFAULTS: Final = Knobs()
_SAMPLING: Final = ("temperature", "top_p", "seed")
CONNECT_TIMEOUT: Final = 5.0
# The history sent is cut to fit the engine's context as Ollama cuts it to fit num_ctx:
# oldest messages first, the system prompt and the last message kept. Characters, not
# tokens: a small engine's context (2048 tokens) holds this at a token per character.
HISTORY_CHARS: Final = 1500


@dataclass(frozen=True)
class Upstream:
    """The engine answers go to: an OpenAI-compatible base URL and the model to ask."""

    url: str  # e.g. http://127.0.0.1:8080/v1
    model: str


@dataclass
class Forwarded:
    """What the engine streamed for one request."""

    pieces: list[str]
    done_reason: str
    prompt_tokens: int | None = None


def forwardable(
    knobs: Knobs, *, think: bool, tools: bool, images: bool, fmt: object, system: str, stream: bool
) -> bool:
    """A plain streamed answer, with every answer-shaping knob at its default."""
    if not stream or think or tools or images or fmt not in (None, "") or CODE_REQUEST in system:
        return False
    return all(
        getattr(knobs, f.name) == getattr(_DEFAULTS, f.name)
        for f in fields(Knobs)
        if f.name not in _NOT_ANSWER_KNOBS
    )


def fit_history(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """`messages` without the oldest turns that would overflow `HISTORY_CHARS`."""
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    kept = rest[-1:]
    room = HISTORY_CHARS - sum(len(m["content"]) for m in system + kept)
    for message in reversed(rest[:-1]):
        room -= len(message["content"])
        if room < 0:
            break
        kept.insert(0, message)
    return system + kept


def upstream_body(
    upstream: Upstream, messages: list[dict[str, str]], options: Mapping[str, Any], tokens: int
) -> tuple[dict[str, Any], bool]:
    """The engine's request, and whether its `max_tokens` is the client's own limit."""
    limit = options.get("num_predict")
    own_limit = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0
    body: dict[str, Any] = {
        "model": upstream.model,
        "messages": fit_history(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": limit if own_limit else tokens,
    }
    for name in _SAMPLING:
        if options.get(name) is not None:
            body[name] = options[name]
    stop = options.get("stop")
    if isinstance(stop, list) and stop:
        body["stop"] = stop
    return body, own_limit


class UpstreamError(Exception):
    """The engine failed; the message is what the client is told."""


async def stream_answer(
    upstream: Upstream,
    ex: Exchange,
    messages: list[dict[str, str]],
    options: Mapping[str, Any],
    send: Callable[[str], Awaitable[None]],
) -> Forwarded:
    """Stream the engine's answer, awaiting `send(piece)` for each content delta as it
    arrives; UpstreamError if the engine cannot answer."""
    body, own_limit = upstream_body(upstream, messages, options, ex.knobs.tokens)
    timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT)  # the client bounds the wait
    result = Forwarded([], "")
    try:
        url = f"{upstream.url}/chat/completions"
        async with (
            httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
            client.stream("POST", url, json=body) as r,
        ):
            if r.status_code != 200:
                text = (await r.aread()).decode(errors="replace")[:300]
                raise UpstreamError(f"engine at {upstream.url}: {r.status_code} {text}")
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                usage = event.get("usage")
                if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
                    result.prompt_tokens = int(usage["prompt_tokens"])
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        result.pieces.append(piece)
                        await send(piece)
                    reason = choice.get("finish_reason")
                    if reason:
                        cut = reason == "length" and own_limit
                        result.done_reason = "length" if cut else "stop"
    except (httpx.HTTPError, ValueError) as exc:
        raise UpstreamError(f"engine at {upstream.url}: {type(exc).__name__}: {exc}") from exc
    if not result.done_reason:  # llama-cpp-python's way to fail mid-stream (see its log)
        raise UpstreamError(f"engine at {upstream.url}: the stream ended without finish_reason")
    return result
