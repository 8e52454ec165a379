"""``stand-in-tools``: a model that calls tools, deterministically, from its prompt.

The last user message steers it, one instruction per line:

- ``call: add(a=1, b=2); mul(a=3, b=4)`` — a round of calls (several per round, the same
  tool twice too); each ``call:`` line is the next round, in order. Arguments are Python
  literals, written as keyword arguments.
- ``call as string: f(x=1)`` — the same, with the arguments sent as a JSON string (as
  some models' templates produce) instead of an object.
- ``call malformed: f(x=1)`` — the same, the arguments a JSON string cut short (not JSON):
  what a model's broken output looks like.
- ``call forever: f(x=1)`` — this round again and again: a model that never stops.
- ``think: TEXT`` — thinking streamed before each round's calls.

The round is the number of assistant messages with ``tool_calls`` after the last user
message. Once no round is left, the answer lists the tool messages that came back:
``[stand-in] tool results: add → 3; mul → 12``.

Streamed as Ollama's /api/chat streams them (``server/routes.go``): each parsed call in a
chunk of its own, ``message.content`` empty, ``message.tool_calls`` a list of
``{"id": "call_xxxxxxxx", "function": {"index": i, "name": ..., "arguments": {...}}}``
(``api.ToolCall``, ``api.ToolCallFunction``), then the final chunk (``done_reason: "stop"``).
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._text import ANSWER_PREFIX, tokenize


@dataclass(frozen=True)
class ToolRound:
    thinking: tuple[str, ...]  # thinking tokens before the calls
    calls: tuple[dict[str, Any], ...]  # api.ToolCall objects, as sent


def plan_round(messages: Sequence[Mapping[str, Any]]) -> ToolRound | None:
    """The calls of this round, or None when the model answers."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if last_user < 0:
        return None
    prompt = str(messages[last_user].get("content") or "")
    done = sum(
        1 for m in messages[last_user + 1 :] if m.get("role") == "assistant" and m.get("tool_calls")
    )
    rounds: list[tuple[str, str]] = []
    thinking = ""
    forever: tuple[str, str] | None = None
    for line in prompt.splitlines():
        head, sep, rest = line.partition(":")
        head = head.strip().lower()
        if not sep:
            continue
        if head in ("call", "call as string", "call malformed"):
            rounds.append((head, rest))
        elif head == "call forever":
            forever = (head, rest)
        elif head == "think":
            thinking = rest.strip()
    if done < len(rounds):
        kind, text = rounds[done]
    elif forever is not None:
        kind, text = forever
    else:
        return None
    calls = tuple(
        _tool_call(name, arguments, i, kind, f"{done}/{i}/{prompt}")
        for i, (name, arguments) in enumerate(parse_calls(text))
    )
    return ToolRound(tuple(tokenize(thinking)), calls)


def parse_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``f(a=1); g(b='x')`` → [("f", {"a": 1}), ("g", {"b": "x"})]."""
    calls = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        node = ast.parse(part, mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError(f"not a call: {part!r}")
        arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        calls.append((node.func.id, arguments))
    return calls


def _tool_call(
    name: str, arguments: dict[str, Any], index: int, kind: str, seed: str
) -> dict[str, Any]:
    digest = hashlib.sha256(seed.encode()).hexdigest()[:8]
    sent: Any = arguments
    if kind == "call as string":
        sent = json.dumps(arguments)
    elif kind == "call malformed":
        sent = json.dumps(arguments)[:-1]
    return {"id": f"call_{digest}", "function": {"index": index, "name": name, "arguments": sent}}


def results_answer(messages: Sequence[Mapping[str, Any]]) -> str:
    """The answer once the calls are done: what the tool messages said, in order."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = [
        f"{m.get('tool_name') or '?'} → {m.get('content')}"
        for m in messages[last_user + 1 :]
        if m.get("role") == "tool"
    ]
    return ANSWER_PREFIX + "tool results: " + ("; ".join(results) if results else "none")
