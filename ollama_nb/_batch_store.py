"""A batch's results kept as columns: a few bytes per element beyond its text and prompt.

An `OllamaResult` object costs ~1.3 KB beyond its text (its fields, a `final` dict of
ints, a settings dict, floats); for a batch of short answers that is several times the
answers themselves. So a batch keeps, per element, its text, thinking and prompt as UTF-8
in shared buffers (a str object would add ~60 bytes each), each prompt as what differs
from the first one (the template's fixed text is stored once), and its numbers packed,
~90 bytes in all beyond the text, and builds the `OllamaResult` when asked for it; what
the batch's requests share (model, host, settings) is kept once. A result these
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
# Token counts take 4 bytes, durations (ns) 8; a value too big for its column is kept whole.
FINAL_COUNTS = ("prompt_eval_count", "eval_count")
FINAL_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
FINAL_INTS = FINAL_COUNTS + FINAL_DURATIONS
FINAL_DROPPED = ("model", "created_at", "response", "done", "context")
JSON_BIT = 1 << 0  # the result's `json` is its text parsed
REASON_BIT = 1 << 1  # its final chunk had `done_reason` (equal to the result's)
INT_BITS = {key: 1 << (2 + i) for i, key in enumerate(FINAL_INTS)}  # its final chunk had key
# Where each final int lives: (in `counts` rather than `durations`, offset in its row),
# looked up once per value rather than searched for (a replayed batch stores 100,000s).
INT_SLOTS = {
    **{key: (True, i) for i, key in enumerate(FINAL_COUNTS)},
    **{key: (False, i) for i, key in enumerate(FINAL_DURATIONS)},
}
UINT32 = 1 << 32
INT64 = 1 << 63
AFFIX_MAX = (1 << 16) - 1  # longest prefix or suffix a prompt shares with the first one
SKIPPED = "skipped"
_ENTRY_FIELDS = ("text", "prompt", "elapsed", "ttft", "chunks", "done_reason")


class Figures(NamedTuple):
    """What `%ollama stats` counts of one request, read without building its result."""

    done_reason: str | None
    elapsed: float
    ttft: float | None
    tokens_per_second: float | None
    error: BaseException | None = None
    timeout_kind: str | None = None
    cached: bool = False  # replayed from the cache file: not a request


REPLAYED_FIGURES = Figures(done_reason=None, elapsed=0.0, ttft=None, tokens_per_second=None,
                           cached=True)  # fmt: skip


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
            return self._append(position, _encode(text))
        return True

    def _append(self, position: int, encoded: bytes) -> bool:
        if len(self.data) + len(encoded) >= UINT32:
            return False
        self.starts[position] = len(self.data)
        self.sizes[position] = len(encoded)
        self.data += encoded
        return True

    def _stored(self, position: int) -> bytearray:
        start = self.starts[position]
        return self.data[start : start + self.sizes[position]]

    def get(self, position: int) -> str:
        if not self.sizes[position]:
            return ""
        return _decode(self._stored(position))


class _Variants(_Strings):
    """Strings that share most of their text with the first one (prompts filled from one
    template): each keeps only what lies between the prefix and the suffix it shares with
    that first string, whose whole text is kept once."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.first: bytes | None = None
        self.prefixes = array("H", bytes(2 * total))
        self.suffixes = array("H", bytes(2 * total))

    def put(self, position: int, text: str) -> bool:
        encoded = _encode(text)
        if self.first is None and encoded:
            self.first = encoded
        head, tail = _affixes(encoded, self.first or b"")
        self.prefixes[position], self.suffixes[position] = head, tail
        middle = encoded[head : len(encoded) - tail]
        return self._append(position, middle) if middle else True

    def get(self, position: int) -> str:
        first, head, tail = self.first or b"", self.prefixes[position], self.suffixes[position]
        middle = self._stored(position)
        whole = first[:head] + middle + first[len(first) - tail :]
        return _decode(whole)


def _affixes(text: bytes, first: bytes) -> tuple[int, int]:
    """How many leading and trailing bytes `text` shares with `first`, each at most
    AFFIX_MAX; the suffix stops where the prefix ends (what lies between is stored)."""
    size = min(len(text), len(first))
    # Read big-endian, the first byte that differs is the XOR's highest nonzero byte;
    # little-endian over the last bytes, the last byte that differs: one pass in C each
    # for any length, where a loop (or halving by slices) would cost a call per step.
    differ = int.from_bytes(text[:size], "big") ^ int.from_bytes(first[:size], "big")
    head = min(size - (differ.bit_length() + 7) // 8, AFFIX_MAX)
    differ = int.from_bytes(text[len(text) - size :], "little") ^ int.from_bytes(
        first[len(first) - size :], "little"
    )
    tail = min(size - (differ.bit_length() + 7) // 8, len(text) - head, AFFIX_MAX)
    return head, tail


def _encode(text: str) -> bytes:
    # surrogatepass: any str comes back as it was, a lone surrogate too
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes | bytearray) -> str:
    return data.decode("utf-8", "surrogatepass")


class ResultColumns:
    """`total` results by position; an element never stored reads as `skipped`."""

    def __init__(self, total: int, *, model: str, host: str, settings: dict[str, Any]) -> None:
        self.total = total
        self.host = host
        self.settings = settings  # what every request asked for: `settings_of(payload)`
        self.models = _Names(model)  # code 0: the batch's model
        self.reasons = _Names(SKIPPED)  # code 0: never started
        self.texts = _Strings(total)
        self.prompts = _Variants(total)
        self.thinking: _Strings | None = None  # made by the first thinking
        self.model_codes = bytearray(total)
        self.reason_codes = bytearray(total)
        self.flags = bytearray(total)
        self.times = array("d", bytes(16 * total))  # elapsed, ttft (NaN: None)
        self.chunks = array("I", bytes(4 * total))
        self.counts = array("I", bytes(4 * len(FINAL_COUNTS) * total))
        self.durations = array("q", bytes(8 * len(FINAL_DURATIONS) * total))
        self.kept: dict[int, OllamaResult] = {}  # results the columns cannot reproduce
        self.replayed: dict[int, str | None] = {}  # replayed from the cache: when recorded

    # -- storing --------------------------------------------------------------------------

    def put(self, position: int, result: OllamaResult) -> None:
        code = self.reasons.code(result.done_reason)
        self.reason_codes[position] = code if code is not None else 0
        # code 0 reads as "never started": a result that says "skipped" itself is kept whole
        if not code or not self._put_columns(position, result):
            self.kept[position] = _compact(result)
        if result.cached:
            self.replayed[position] = result.recorded_at

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
            or not (isinstance(r.chunks, int) and 0 <= r.chunks < UINT32)
        ):
            return False
        flags = self._final_flags(position, r.final, r.done_reason)
        if flags is None or _derived(self._final(flags, position, r.done_reason)) != (
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

    def put_entry(self, position: int, entry: dict[str, Any]) -> bool:
        """A replayed cache entry (`_cache`) straight into the columns, without building
        its `OllamaResult` (a batch of 100,000 replays in seconds); False: it holds
        something the columns cannot (the caller stores the built result instead)."""
        text, prompt, elapsed, ttft, chunks, reason = map(entry.get, _ENTRY_FIELDS)
        if (
            entry.get("thinking")
            or entry.get("settings") != self.settings
            or type(text) is not str
            or type(prompt) is not str
            or type(elapsed) is not float
            or not (ttft is None or type(ttft) is float)
            or type(chunks) is not int
            or not 0 <= chunks < UINT32
        ):
            return False
        model, code = self.models.code(entry.get("model")), self.reasons.code(reason)
        if model is None or not code:
            return False
        final = entry.get("final")
        flags = self._final_flags(position, final, reason)
        # Once `_final_flags` took it, every int of `final` is in the columns as it is, so
        # the figures derive from `final` itself as from what `get` will read back.
        if flags is None or _derived(final) != (
            entry.get("eval_count"),
            entry.get("prompt_eval_count"),
            entry.get("tokens_per_second"),
        ):
            return False
        if not (self.texts.put(position, text) and self.prompts.put(position, prompt)):
            return False
        self.reason_codes[position] = code
        self.flags[position] = flags
        self.model_codes[position] = model
        self.times[2 * position] = elapsed
        self.times[2 * position + 1] = math.nan if ttft is None else ttft
        self.chunks[position] = chunks
        self.replayed[position] = entry.get("recorded")
        return True

    def _final_flags(self, position: int, final: Any, reason: str | None) -> int | None:
        """The final chunk's keys as flags, its ints written to their columns; None: it
        has something the columns cannot hold."""
        if type(final) is not dict:
            return None
        flags = 0
        # Inlined (no `_int_slot` call per value): a replayed batch comes here per element.
        counts, count_row = self.counts, position * len(FINAL_COUNTS)
        durations, duration_row = self.durations, position * len(FINAL_DURATIONS)
        for key, value in final.items():
            slot = INT_SLOTS.get(key)
            if slot is not None:
                in_counts, offset = slot
                if type(value) is not int or not 0 <= value < (UINT32 if in_counts else INT64):
                    return None
                if in_counts:
                    counts[count_row + offset] = value
                else:
                    durations[duration_row + offset] = value
                flags |= INT_BITS[key]
            elif key == "done_reason":
                if value != reason or type(value) is not str:
                    return None
                flags |= REASON_BIT
            elif key not in FINAL_DROPPED:
                return None
        return flags

    def _int_slot(self, key: str, position: int) -> tuple[array[int], int]:
        """Where the final chunk's int `key` of element `position` is kept."""
        in_counts, offset = INT_SLOTS[key]
        if in_counts:
            return self.counts, position * len(FINAL_COUNTS) + offset
        return self.durations, position * len(FINAL_DURATIONS) + offset

    def _final(self, flags: int, position: int, reason: str | None) -> dict[str, Any]:
        final: dict[str, Any] = {"done_reason": reason} if flags & REASON_BIT else {}
        for key in FINAL_INTS:
            if flags & INT_BITS[key]:
                column, index = self._int_slot(key, position)
                final[key] = column[index]
        return final

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
            column, index = self._int_slot("eval_count", position)
            return column[index]
        return self.chunks[position]

    def figures(self, position: int) -> Figures | OllamaResult:
        kept = self.kept.get(position)
        if kept is not None:
            return kept
        if position in self.replayed:  # counted apart, nothing else read: no figures built
            return REPLAYED_FIGURES
        ttft = self.times[2 * position + 1]
        final = self._final(self.flags[position], position, None)
        return Figures(
            done_reason=self.reason(position),
            elapsed=self.times[2 * position],
            ttft=None if math.isnan(ttft) else ttft,
            tokens_per_second=_derived(final)[2],
            cached=position in self.replayed,
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
        final = self._final(flags, position, reason)
        eval_count, prompt_eval_count, tokens_per_second = _derived(final)
        text = self.texts.get(position)
        ttft = self.times[2 * position + 1]
        result = OllamaResult(
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
        if position in self.replayed:
            result.cached, result.recorded_at = True, self.replayed[position]
        return result


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
