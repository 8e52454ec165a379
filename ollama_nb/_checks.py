"""Checks on what a request would send, made before anything is drawn or sent.

Each raises ValueError with a short message; the caller turns it into a usage error.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

MAX_DEPTH = 100  # deeper than this, JSON encoding would hit Python's recursion limit


def check_prompt_text(text: str, what: str = "the prompt") -> None:
    """Text must be encodable as UTF-8: a lone surrogate (e.g. from a bad decode) is not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise ValueError(
            f"{what} contains a lone surrogate (U+{ord(bad):04X}) at position {exc.start},"
            " which cannot be sent as UTF-8; fix or drop that character"
        ) from None


def check_json_value(value: Any, what: str) -> None:
    """`value` must be plain JSON: finite numbers, str keys, lists/dicts/str/bool/None."""
    _check(value, what, "", 0)


def _check(value: Any, what: str, path: str, depth: int) -> None:
    where = f"{what}{path}"
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot carry")
        return
    if isinstance(value, str):
        check_prompt_text(value, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a key {key!r} that is not a string")
            check_prompt_text(key, f"{where} key {key!r}")
            _check(item, what, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, what, f"{path}[{index}]", depth + 1)
        return
    raise ValueError(f"{where} is a {type(value).__name__}, which JSON cannot carry")


# What a grep/sed user writes, and what Python's re says instead (re reads `[[:alpha:]]`
# as a set holding `[`, `:`, `a`, … and only warns "Possible nested set").
POSIX_CLASSES = {
    "alpha": r"[^\W\d_]", "digit": r"\d", "alnum": r"[^\W_]", "space": r"\s", "word": r"\w",
    "upper": "[A-Z]", "lower": "[a-z]", "xdigit": "[0-9A-Fa-f]", "blank": r"[ \t]",
}  # fmt: skip
_POSIX_CLASS = re.compile(
    r"\[:(alnum|alpha|ascii|blank|cntrl|digit|graph|lower|print|punct|space|upper|word|xdigit):\]"
)


def compile_pattern(pattern: str, what: str) -> re.Pattern[str]:
    """`pattern` compiled (`what` names it: `--stop-on`, `stop_on`). ValueError in one line
    for an invalid pattern, or one written with POSIX classes; re's other warnings about
    it (FutureWarning: "Possible set difference", …) are passed on as about `what`, not
    as coming from inside this package."""
    posix = _POSIX_CLASS.search(pattern)
    if posix:
        name = posix.group(1)
        instead = (
            f" (for [[:{name}:]] write {POSIX_CLASSES[name]})" if name in POSIX_CLASSES else ""
        )
        raise ValueError(
            f"{what} {pattern!r}: {posix.group(0)} is a POSIX class, which Python regular"
            f" expressions do not have{instead}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:  # a{4294967296}, deep nesting
            raise ValueError(
                f"{what} {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    for warning in caught:
        warnings.warn_explicit(f"{what} {pattern!r}: {warning.message}", warning.category, what, 1)
    return compiled
