"""Knobs: the per-request behaviour switches of the stand-in, and their validation.

Knobs come from three places, later wins: the server's constructor, ``configure()``, and
the request's ``options`` keys prefixed ``standin_``. The prefix keeps them apart from
real model options; a real Ollama ignores unknown options, so a test that sends them to
a real server still works.

Every knob is a field of :class:`Knobs`, with its kind and help text in the field's
metadata, so the names, defaults, validation and the CLI help have one source.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

OPTION_PREFIX: Final = "standin_"


class KnobError(ValueError):
    """A knob name is unknown, or its value has the wrong type or range."""


def _knob(default: Any, kind: str, help: str) -> Any:
    # `kind` drives validation: seconds (float >= 0), count (int >= 0), positive (int >= 1),
    # text (str), flag (bool), status (HTTP status 100-599). A None default makes the knob
    # optional: None switches the behaviour off.
    return field(default=default, metadata={"kind": kind, "help": help})


@dataclass(frozen=True)
class Knobs:
    """The effective behaviour for one request. All fields are knob names."""

    token_interval: float = _knob(0.005, "seconds", "seconds between two streamed chunks")
    first_chunk_delay: float = _knob(
        0.0,
        "seconds",
        "generate/chat/embed: seconds before headers and first chunk (model load + prompt),"
        " counted once the request has its slot",
    )
    tokens: int = _knob(24, "count", "length of the deterministic answer, in tokens")
    reply: str | None = _knob(None, "text", "answer exactly this text (no prefix added)")
    thinking: str | None = _knob(None, "text", "thinking text, when the model thinks")
    stall_after: int | None = _knob(None, "count", "after N chunks write nothing more")
    stall_for: float | None = _knob(
        None, "seconds", "with stall_after: resume after this many seconds (else stall forever)"
    )
    drop_after: int | None = _knob(None, "count", "after N chunks close the connection mid-body")
    error_after: int | None = _knob(
        None, "count", "after N chunks write an error line and end the response"
    )
    error: str = _knob("stand-in error", "text", "message of error lines and error statuses")
    malformed_after: int | None = _knob(
        None, "count", "after N chunks write one line that is not JSON, then go on"
    )
    status: int | None = _knob(
        None, "status", "/api/*: answer this HTTP status with {'error': error}, before any output"
    )
    split_utf8: bool = _knob(
        False, "flag", "write each line in two writes ~20 ms apart, split inside a UTF-8 character"
    )
    close_before_headers: bool = _knob(
        False, "flag", "read the request, then close the connection without any response"
    )
    pull_interval: float = _knob(0.02, "seconds", "seconds between two /api/pull progress lines")
    pull_step: int = _knob(262_144, "positive", "bytes 'downloaded' per /api/pull progress line")
    pull_seconds: float | None = _knob(
        None,
        "seconds",
        "spread a whole /api/pull over about this many seconds (instead of pull_interval),"
        " e.g. 2 to see a progress bar move",
    )
    num_parallel: int = _knob(
        1,
        "positive",
        "requests one model serves at once (OLLAMA_NUM_PARALLEL); more wait in a queue,"
        " receiving nothing",
    )
    max_queue: int = _knob(
        512,
        "count",
        "requests allowed to wait (OLLAMA_MAX_QUEUE); one more gets 503 'server busy'",
    )
    api_key: str | None = _knob(
        None, "text", "require 'Authorization: Bearer <api_key>' (401 otherwise)"
    )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def merged(self, overrides: Mapping[str, object], *, prefix: str = "") -> Knobs:
        """A copy with `overrides` applied; raises KnobError naming bad knobs.

        `prefix` is only used in messages, so that an error names the key the way the
        caller wrote it (``standin_tokens`` in a request's options).
        """
        return dataclasses.replace(self, **check_knobs(overrides, prefix=prefix))


KNOB_FIELDS: Final[Mapping[str, dataclasses.Field[Any]]] = {
    f.name: f for f in dataclasses.fields(Knobs)
}


def knob_help() -> str:
    """One line per knob: name, default and meaning (for docs and --help)."""
    return "\n".join(
        f"{name} (default {f.default!r}): {f.metadata['help']}" for name, f in KNOB_FIELDS.items()
    )


def check_knobs(values: Mapping[str, object], *, prefix: str = "") -> dict[str, Any]:
    """Validate knob values; return them normalised (ints for counts, floats for seconds)."""
    unknown = sorted(set(values) - set(KNOB_FIELDS))
    if unknown:
        # Name the offending keys as written, and the valid ones, so a typo is obvious.
        names = ", ".join(prefix + name for name in unknown)
        known = ", ".join(prefix + name for name in KNOB_FIELDS)
        raise KnobError(f"unknown stand-in knob(s): {names} (known: {known})")
    return {
        name: _check_value(prefix + name, KNOB_FIELDS[name], value)
        for name, value in values.items()
    }


def knobs_from_options(options: Mapping[str, object]) -> dict[str, object]:
    """The ``standin_*`` entries of a request's options, with the prefix stripped."""
    return {
        key[len(OPTION_PREFIX) :]: value
        for key, value in options.items()
        if key.startswith(OPTION_PREFIX)
    }


def _check_value(label: str, spec: dataclasses.Field[Any], value: object) -> Any:
    kind: str = spec.metadata["kind"]
    if value is None and spec.default is None:
        return None
    # bool is an int subclass, but True as a count or a delay is always a mistake.
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        number = float(value)
    if kind == "seconds":
        if number is not None and number >= 0:
            return number
        raise KnobError(f"stand-in knob {label} must be a number of seconds >= 0, not {value!r}")
    if kind in ("count", "positive"):
        minimum = 0 if kind == "count" else 1
        if number is not None and number.is_integer() and number >= minimum:
            return int(number)
        raise KnobError(f"stand-in knob {label} must be an integer >= {minimum}, not {value!r}")
    if kind == "status":
        if number is not None and number.is_integer() and 100 <= number <= 599:
            return int(number)
        raise KnobError(f"stand-in knob {label} must be an HTTP status (100-599), not {value!r}")
    if kind == "text":
        if isinstance(value, str):
            return value
        raise KnobError(f"stand-in knob {label} must be a string, not {value!r}")
    if kind == "flag":
        if isinstance(value, bool):
            return value
        raise KnobError(f"stand-in knob {label} must be true or false, not {value!r}")
    raise AssertionError(f"unknown knob kind {kind!r}")
