"""Deterministic answers: what the stand-in "generates", and how it is cut into tokens.

Pure functions only. The answer depends on nothing but the request and the knobs, so a
test can compute what it should receive, and it is visibly not a model's answer: the
generated text begins with ``[stand-in] `` (the ``reply`` knob gives exact control
instead, for tests that need hostile HTML, non-ASCII and so on). A request whose system
prompt asks for a ```python block gets the filler and then `CODE_BLOCK`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._knobs import Knobs

ANSWER_PREFIX: Final = "[stand-in] "
THINKING_PREFIX: Final = "[stand-in thinking] "
THINKING_TOKENS: Final = 12
# A system prompt that asks for a fenced Python block (as `%%ollama --code` sends) gets the
# filler followed by this block: filler too, but code a notebook can run.
CODE_REQUEST: Final = "```python"
CODE_BLOCK: Final = (
    '```python\n# [stand-in] code: a model would write yours here\nprint("stand-in")\n```'
)

# A word with its trailing whitespace is one token, so joining the tokens gives the text
# back exactly; leading whitespace becomes a token of its own.
TOKEN_PATTERN: Final = re.compile(r"\S+\s*|\s+")

# Plain, neutral words: the text should read as filler, never as an answer.
_VOCABULARY: Final = (
    "stand-in", "placeholder", "sample", "token", "stream", "chunk", "filler", "text",
    "fixture", "test", "signal", "marker", "output", "line", "value", "echo", "synthetic",
    "stub", "example", "words", "sequence", "steady", "plain", "simple", "quiet", "local",
    "fixed", "seeded", "repeatable", "neutral", "blank", "dummy",
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Split text into streaming tokens; ``"".join(tokenize(t)) == t``."""
    return TOKEN_PATTERN.findall(text)


def seed_material(**parts: object) -> bytes:
    """Canonical bytes of the request parts the answer depends on."""
    return json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr).encode()


def _numbers(material: bytes) -> Iterator[int]:
    # sha256 in counter mode: stable across Python versions and platforms, unlike
    # relying on the details of `random.Random`.
    counter = 0
    while True:
        digest = hashlib.sha256(material + counter.to_bytes(8, "big")).digest()
        for offset in range(0, len(digest), 4):
            yield int.from_bytes(digest[offset : offset + 4], "big")
        counter += 1


def deterministic_text(material: bytes, n_tokens: int, prefix: str) -> str:
    """`n_tokens` tokens: the prefix's words, then seeded filler in short sentences."""
    prefix_tokens = tokenize(prefix)
    if n_tokens <= len(prefix_tokens):
        return "".join(prefix_tokens[:n_tokens]).rstrip()
    numbers = _numbers(material)
    words: list[str] = []
    sentence_left = 0
    for _ in range(n_tokens - len(prefix_tokens)):
        word = _VOCABULARY[next(numbers) % len(_VOCABULARY)]
        if sentence_left == 0:
            word = word[0].upper() + word[1:]
            sentence_left = 4 + next(numbers) % 6
        sentence_left -= 1
        if sentence_left == 0:
            word += "."
        words.append(word)
    if not words[-1].endswith("."):
        words[-1] += "."
    return prefix + " ".join(words)


def fill_schema(schema: object) -> object:
    """A value matching a JSON schema's types: strings "stand-in", numbers 0, ..."""
    if not isinstance(schema, Mapping):
        return "stand-in"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        # ["string", "null"]: prefer the non-null type so the value carries something.
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), Mapping)):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {str(name): fill_schema(sub) for name, sub in properties.items()}
    simple: dict[object, object] = {
        "string": "stand-in",
        "number": 0,
        "integer": 0,
        "boolean": True,
        "array": [],
        "null": None,
    }
    return simple.get(kind, "stand-in")


def structured_answer(fmt: object, text: str) -> str:
    """The answer as JSON text for ``format``: "json" or a JSON-schema object."""
    if isinstance(fmt, Mapping):
        return json.dumps(fill_schema(fmt), ensure_ascii=False)
    return json.dumps({"stand_in": True, "answer": text}, ensure_ascii=False)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """Text up to (not including) the earliest stop sequence."""
    cut = len(text)
    for stop in stops:
        if stop:
            index = text.find(stop)
            if index != -1:
                cut = min(cut, index)
    return text[:cut]


def token_ids(tokens: Sequence[str]) -> list[int]:
    """Stable fake token ids, used for a generate response's ``context``."""
    return [
        int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "big") % 128_000 for t in tokens
    ]


def answer_prefix(images: Sequence[str]) -> str:
    """``[stand-in] ``, and for a vision model what it was shown: ``saw 1 image: 2x3 PNG.``"""
    if not images:
        return ANSWER_PREFIX
    noun = "image" if len(images) == 1 else "images"
    return f"{ANSWER_PREFIX}saw {len(images)} {noun}: {', '.join(images)}. "


@dataclass(frozen=True)
class AnswerPlan:
    """What one generate/chat request streams: thinking tokens, then answer tokens."""

    thinking: tuple[str, ...]
    answer: tuple[str, ...]
    done_reason: str

    @property
    def eval_count(self) -> int:
        # As in Ollama, every generated token counts, thinking included.
        return len(self.thinking) + len(self.answer)


@dataclass(frozen=True)
class Prompt:
    """The parts of a request the answer is derived from."""

    model: str
    text: str  # the prompt, or the last user message of a chat
    system: str
    seed: object
    think: bool
    format: object  # None, "json" or a schema dict
    num_predict: int | None
    stops: tuple[str, ...]
    images: tuple[str, ...] = ()  # what a vision model "sees": "640x480 PNG", ...


def plan_answer(prompt: Prompt, knobs: Knobs) -> AnswerPlan:
    """Decide the tokens and the done_reason of a request, before any is sent."""
    # Images join the material only when there are some, so that answers without images
    # stay what they were before vision existed (the tutorials' stored outputs hold them).
    extra = {"images": list(prompt.images)} if prompt.images else {}
    material = seed_material(
        model=prompt.model,
        prompt=prompt.text,
        system=prompt.system,
        seed=prompt.seed,
        tokens=knobs.tokens,
        **extra,
    )
    if knobs.reply is not None:
        answer = knobs.reply
    else:
        answer = deterministic_text(material, knobs.tokens, answer_prefix(prompt.images))
        if prompt.format not in (None, ""):
            answer = structured_answer(prompt.format, answer)
        elif CODE_REQUEST in prompt.system:
            answer = f"{answer}\n\n{CODE_BLOCK}\n"
    answer = cut_at_stop(answer, prompt.stops)
    thinking: list[str] = []
    if prompt.think:
        text = knobs.thinking
        if text is None:
            text = deterministic_text(material + b"/thinking", THINKING_TOKENS, THINKING_PREFIX)
        thinking = tokenize(text)
    answer_tokens = tokenize(answer)
    done_reason = "stop"
    # num_predict bounds every generated token, thinking included, as it does in Ollama;
    # a negative value means "no limit".
    limit = prompt.num_predict
    if limit is not None and limit >= 0 and len(thinking) + len(answer_tokens) > limit:
        done_reason = "length"
        thinking = thinking[:limit]
        answer_tokens = answer_tokens[: limit - len(thinking)]
    return AnswerPlan(tuple(thinking), tuple(answer_tokens), done_reason)


def prompt_token_count(texts: Sequence[str]) -> int:
    """Tokens "evaluated" for the prompt; at least 1, as a template always adds some."""
    return max(1, sum(len(tokenize(t)) for t in texts))
