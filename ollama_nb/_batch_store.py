"""A batch's results kept as columns: a few bytes per element beyond its text and prompt.

An `OllamaResult` object costs ~1.3 KB beyond its text (its fields, a `final` dict of
ints, a settings dict, floats); for a batch of short answers that is several times the
answers themselves. So a batch keeps, per element, its text, thinking and prompt as UTF-8
in shared buffers (a str object would add ~60 bytes each) and its numbers packed, ~100
bytes in all beyond the text and prompt, and builds the `OllamaResult` when asked for it;
what the batch's requests share (model, host, settings) is kept once. A result these
columns cannot reproduce field for field (an error, a timeout, images, anything unusual)
is kept as it is.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from typing import Any, NamedTuple

from ._result import OllamaResult

# The final chunk's keys the columns keep (as ints, plus `done_reason`); the rest of a
# final chunk (model, created_at, response, done) is dropped, as for every batch result.
FINAL_INTS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
FINAL_DROPPED = ("model", "created_at", "response", "done", "context")
JSON_BIT = 1 << 0  # the result's `json` is its text parsed
REASON_BIT = 1 << 1  # its final chunk had `done_reason` (equal to the result's)
INT_BITS = {key: 1 << (2 + i) for i, key in enumerate(FINAL_INTS)}  # its final chunk had key
INT64 = 1 << 63
SKIPPED = "skipped"


class Figures(NamedTuple):
    """What `%ollama stats` counts of one request, read without building its result."""

    done_reason: str | None
    elapsed: float
    ttft: float | None
    tokens_per_second: float | None
    error: BaseException | None = None
    timeout_kind: str | None = None


class _Names:
    """A few distinct strings (models, done reasons), each stored once, by a 1-byte code."""

    def __init__(self, first: str | None) -> None:
        self.names: list[str | None] = [first]

    def code(self, name: str | None) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            if len(self.names) > 255:
                return None
            self.names.append(sys.intern(name) if name is not None else None)
            return len(self.names) - 1


class _Strings:
    """Strings by position, packed as UTF-8 in one buffer (in the order they came)."""

    def __init__(self, total: int) -> None:
        self.data = bytearray()
        self.starts = array("I", bytes(4 * total))
        self.sizes = array("I", bytes(4 * total))

    def put(self, position: int, text: str) -> bool:
        """False when it cannot be stored (the buffer would pass 4 GB)."""
        if text:
            encoded = text.encode("utf-8", "surrogatepass")  # any str comes back as it was
            if len(self.data) + len(encoded) >= 1 << 32:
                return False
            self.starts[position] = len(self.data)
            self.sizes[position] = len(encoded)
            self.data += encoded
        return True

    def get(self, position: int) -> str:
        size = self.sizes[position]
        if not size:
            return ""
        start = self.starts[position]
        return self.data[start : start + size].decode("utf-8", "surrogatepass")


class ResultColumns:
    """`total` results by position; an element never stored reads as `skipped`."""

    def __init__(self, total: int, *, model: str, host: str, settings: dict[str, Any]) -> None:
        self.total = total
        self.host = host
        self.settings = settings  # what every request asked for: `settings_of(payload)`
        self.models = _Names(model)  # code 0: the batch's model
        self.reasons = _Names(SKIPPED)  # code 0: never started
        self.texts = _Strings(total)
        self.prompts = _Strings(total)
        self.thinking: _Strings | None = None  # made by the first thinking
        self.model_codes = bytearray(total)
        self.reason_codes = bytearray(total)
        self.flags = bytearray(total)
        self.times = array("d", bytes(16 * total))  # elapsed, ttft (NaN: None)
        self.chunks = array("q", bytes(8 * total))
        self.finals = array("q", bytes(8 * len(FINAL_INTS) * total))
        self.kept: dict[int, OllamaResult] = {}  # results the columns cannot reproduce

    # -- storing --------------------------------------------------------------------------

    def put(self, position: int, result: OllamaResult) -> None:
        code = self.reasons.code(result.done_reason)
        self.reason_codes[position] = code if code is not None else 0
        # code 0 reads as "never started": a result that says "skipped" itself is kept whole
        if not code or not self._put_columns(position, result):
            self.kept[position] = _compact(result)

    def _put_columns(self, position: int, r: OllamaResult) -> bool:
        model = self.models.code(r.model)
        if (
            model is None
            or type(r) is not OllamaResult
            or r.host != self.host
            or r.settings != self.settings
            or r.images
            or r.error is not None
            or r.timeout_kind is not None
            or r.stopped != (r.done_reason == "stopped")
            or type(r.text) is not str
            or type(r.thinking) is not str
            or type(r.prompt) is not str
            or not isinstance(r.elapsed, float)
            or not (r.ttft is None or (isinstance(r.ttft, float) and not math.isnan(r.ttft)))
            or not (isinstance(r.chunks, int) and 0 <= r.chunks < INT64)
        ):
            return False
        flags = self._final_flags(position, r.final, r.done_reason)
        if flags is None or _derived(_final(flags, self.finals, position, r.done_reason)) != (
            r.eval_count,
            r.prompt_eval_count,
            r.tokens_per_second,
        ):
            return False
        if r.json is not None:
            try:
                if json.loads(r.text) != r.json:
                    return False
            except ValueError:
                return False
            flags |= JSON_BIT
        if r.thinking and self.thinking is None:
            self.thinking = _Strings(self.total)
        if not (
            self.texts.put(position, r.text)
            and self.prompts.put(position, r.prompt)
            and (self.thinking is None or self.thinking.put(position, r.thinking))
        ):
            return False
        self.flags[position] = flags
        self.model_codes[position] = model
        self.times[2 * position] = r.elapsed
        self.times[2 * position + 1] = math.nan if r.ttft is None else r.ttft
        self.chunks[position] = r.chunks
        return True

    def _final_flags(self, position: int, final: Any, reason: str | None) -> int | None:
        """The final chunk's keys as flags, its ints written to `finals`; None: it has
        something the columns cannot hold."""
        if type(final) is not dict:
            return None
        flags = 0
        base = position * len(FINAL_INTS)
        for key, value in final.items():
            if key == "done_reason":
                if value != reason or type(value) is not str:
                    return None
                flags |= REASON_BIT
            elif key in INT_BITS:
                if type(value) is not int or not 0 <= value < INT64:
                    return None
                flags |= INT_BITS[key]
                self.finals[base + FINAL_INTS.index(key)] = value
            elif key not in FINAL_DROPPED:
                return None
        return flags

    # -- reading --------------------------------------------------------------------------

    def text(self, position: int) -> str:
        kept = self.kept.get(position)
        return kept.text if kept is not None else self.texts.get(position)

    def reason(self, position: int) -> str | None:
        kept = self.kept.get(position)
        if kept is not None:
            return kept.done_reason
        return self.reasons.names[self.reason_codes[position]]

    def tokens(self, position: int) -> int:
        """Its `eval_count`, or its chunk count where the server gave none."""
        kept = self.kept.get(position)
        if kept is not None:
            return kept.eval_count if kept.eval_count is not None else kept.chunks
        if self.flags[position] & INT_BITS["eval_count"]:
            return self.finals[position * len(FINAL_INTS) + FINAL_INTS.index("eval_count")]
        return self.chunks[position]

    def figures(self, position: int) -> Figures | OllamaResult:
        kept = self.kept.get(position)
        if kept is not None:
            return kept
        ttft = self.times[2 * position + 1]
        final = _final(self.flags[position], self.finals, position, None)
        return Figures(
            done_reason=self.reason(position),
            elapsed=self.times[2 * position],
            ttft=None if math.isnan(ttft) else ttft,
            tokens_per_second=_derived(final)[2],
        )

    def get(self, position: int) -> OllamaResult:
        kept = self.kept.get(position)
        if kept is not None:
            return kept
        reason_code = self.reason_codes[position]
        reason = self.reasons.names[reason_code]
        model = self.models.names[self.model_codes[position]] or ""
        if reason_code == 0:  # never started: as the batch made it
            return OllamaResult(model=model, done_reason=SKIPPED, host=self.host)
        flags = self.flags[position]
        final = _final(flags, self.finals, position, reason)
        eval_count, prompt_eval_count, tokens_per_second = _derived(final)
        text = self.texts.get(position)
        ttft = self.times[2 * position + 1]
        return OllamaResult(
            model=model,
            text=text,
            thinking=self.thinking.get(position) if self.thinking is not None else "",
            done_reason=reason,
            stopped=reason == "stopped",
            elapsed=self.times[2 * position],
            ttft=None if math.isnan(ttft) else ttft,
            eval_count=eval_count,
            prompt_eval_count=prompt_eval_count,
            tokens_per_second=tokens_per_second,
            json=json.loads(text) if flags & JSON_BIT else None,
            host=self.host,
            chunks=self.chunks[position],
            final=final,
            prompt=self.prompts.get(position),
            settings=dict(self.settings),
        )


def _final(flags: int, finals: array[int], position: int, reason: str | None) -> dict[str, Any]:
    final: dict[str, Any] = {"done_reason": reason} if flags & REASON_BIT else {}
    base = position * len(FINAL_INTS)
    for i, key in enumerate(FINAL_INTS):
        if flags & INT_BITS[key]:
            final[key] = finals[base + i]
    return final


def _derived(final: dict[str, Any]) -> tuple[int | None, int | None, float | None]:
    """eval_count, prompt_eval_count and tokens/s, computed as `build_result` does."""
    eval_count = final.get("eval_count")
    eval_ns = final.get("eval_duration")
    rate = eval_count / eval_ns * 1e9 if eval_count is not None and eval_ns else None
    return eval_count, final.get("prompt_eval_count"), rate


def _compact(result: OllamaResult) -> OllamaResult:
    """A result kept whole: share its repeated strings and drop what it holds elsewhere."""
    result.model = sys.intern(result.model)
    if result.done_reason is not None:
        result.done_reason = sys.intern(result.done_reason)
    result.final = {
        sys.intern(key): sys.intern(value) if isinstance(value, str) else value
        for key, value in result.final.items()
        if key not in FINAL_DROPPED
    }
    return result
