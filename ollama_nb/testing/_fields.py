"""Request fields checked the way Ollama's Go server checks them, with its messages.

Ollama decodes a request body into a typed Go struct (``api/types.go``): a field of the
wrong JSON type, a ``think`` that is not a bool or a level, a ``keep_alive`` that is not a
duration and an image that is not base64 are a 400 with Go's own error text. Model options
are checked later, when the model is scheduled (``Options.FromMap``): a type error there
is a 500. Unknown options are ignored. The messages below are Go's, reproduced; where Go's
wording depends on details Python's JSON parser hides (``1.0`` versus ``1``), they are
close paraphrases.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

THINK_LEVELS: Final = ("high", "medium", "low", "max")
FOREVER: Final = math.inf  # keep_alive < 0: never unload
DEFAULT_KEEP_ALIVE: Final = 300.0  # OLLAMA_KEEP_ALIVE's default, 5m

# Go type names as they appear in encoding/json's errors.
_STRING, _BOOL, _INT = "string", "bool", "int"
_OPTIONS = "map[string]interface {}"
_COMMON: Final[Mapping[str, str]] = {
    "model": _STRING,
    "stream": _BOOL,
    "options": _OPTIONS,
    "truncate": _BOOL,
    "shift": _BOOL,
    "logprobs": _BOOL,
    "top_logprobs": _INT,
}
# Fields with a type check; fields not listed (format, tools, input, think, keep_alive)
# are either free-form JSON or have checks of their own below.
STRUCTS: Final[Mapping[str, Mapping[str, str]]] = {
    "GenerateRequest": {
        **_COMMON,
        "prompt": _STRING,
        "suffix": _STRING,
        "system": _STRING,
        "template": _STRING,
        "context": "[]int",
        "raw": _BOOL,
        "images": "[]api.ImageData",
    },
    "ChatRequest": {**_COMMON, "messages": "[]api.Message"},
    "EmbedRequest": {
        "model": _STRING,
        "options": _OPTIONS,
        "truncate": _BOOL,
        "dimensions": _INT,
    },
    "ShowRequest": {"model": _STRING, "name": _STRING, "system": _STRING, "verbose": _BOOL},
    "PullRequest": {"model": _STRING, "name": _STRING, "insecure": _BOOL, "stream": _BOOL},
}
MESSAGE_FIELDS: Final[Mapping[str, str]] = {
    "role": _STRING,
    "content": _STRING,
    "thinking": _STRING,
    "images": "[]api.ImageData",
    "tool_name": _STRING,
    "tool_call_id": _STRING,
}

# Options.FromMap: the JSON type each known option needs (api.Options and api.Runner).
_INT_OPTIONS: Final = (
    "num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
    "num_gpu", "main_gpu", "num_thread", "draft_num_predict",
)  # fmt: skip
_FLOAT_OPTIONS: Final = (
    "top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
    "frequency_penalty",
)  # fmt: skip
OPTION_KINDS: Final[Mapping[str, str]] = {
    **dict.fromkeys(_INT_OPTIONS, "integer"),
    **dict.fromkeys(_FLOAT_OPTIONS, "float32"),
    "use_mmap": "boolean",
    "stop": "array",
}


class FieldError(Exception):
    """A request field Ollama would refuse: answered with `status` and this message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string, for ASCII text exactly (JSON escaping otherwise)."""
    return json.dumps(text, ensure_ascii=False)


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}" if isinstance(value, float) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _fits(value: object, go_type: str) -> bool:
    if value is None:
        return True  # null leaves a Go field at its zero value
    if go_type == _STRING:
        return isinstance(value, str)
    if go_type == _BOOL:
        return isinstance(value, bool)
    if go_type == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if go_type == _OPTIONS:
        return isinstance(value, dict)
    return isinstance(value, list)  # the element checks follow


def _type_error(value: object, where: str, go_type: str) -> FieldError:
    what = f"json: cannot unmarshal {_json_kind(value)} into Go struct field {where}"
    return FieldError(400, f"{what} of type {go_type}")


def check_struct(body: Mapping[str, Any], struct: str) -> None:
    """Raise the 400 Go's decoder gives for the first field of the wrong JSON type."""
    for name, value in body.items():
        go_type = STRUCTS[struct].get(name)
        if go_type is None:
            continue
        where = f"{struct}.{name}"
        if not _fits(value, go_type):
            raise _type_error(value, where, go_type)
        if go_type == "[]int":
            for item in value or ():
                if not _fits(item, _INT) or item is None:
                    raise _type_error(item, where, _INT)
        elif go_type == "[]api.ImageData":
            check_images(value or [], where)
        elif go_type == "[]api.Message":
            for message in value or ():
                _check_message(message, where)


def _check_message(message: object, where: str) -> None:
    if message is None:
        return
    if not isinstance(message, dict):
        raise _type_error(message, where, "api.Message")
    for name, value in message.items():
        go_type = MESSAGE_FIELDS.get(name)
        if go_type is None:
            continue
        if not _fits(value, go_type):
            raise _type_error(value, f"{where}.{name}", go_type)
        if go_type == "[]api.ImageData":
            check_images(value or [], f"{where}.{name}")


# -- think -------------------------------------------------------------------------------


def parse_think(value: object) -> bool | str | None:
    """``think``: None (absent), a bool or a level; anything else is Go's 400."""
    if value is None or isinstance(value, bool):
        return value
    levels = '("high", "medium", "low", "max", true, or false)'
    if isinstance(value, str):
        if value in THINK_LEVELS:
            return value
        raise FieldError(400, f"invalid think value: {go_quote(value)} (must be {levels[1:-1]})")
    raise FieldError(400, f"think must be a boolean or string {levels}")


# -- keep_alive --------------------------------------------------------------------------

_UNITS: Final[Mapping[str, float]] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER: Final = re.compile(r"(\d*)(?:\.(\d*))?")


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds; ValueError with Go's message."""
    quoted = go_quote(text)
    rest, sign = text, 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        number = _NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {quoted}")
        rest = rest[number.end() :]
        unit_end = next((i for i, c in enumerate(rest) if c == "." or c.isdigit()), len(rest))
        if unit_end == 0:
            raise ValueError(f"time: missing unit in duration {quoted}")
        unit, rest = rest[:unit_end], rest[unit_end:]
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {quoted}")
        total += float(f"{whole or 0}.{fraction or 0}") * _UNITS[unit]
    return sign * total


def parse_keep_alive(value: object) -> float | None:
    """``keep_alive`` in seconds (FOREVER for negative values), None when absent.

    As ``api.Duration`` decodes it: a number is seconds, a string a Go duration
    (``"10m"``, ``"1h30m"``, ``"0"``), anything negative means "never unload".
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FOREVER if value < 0 else float(value)
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise FieldError(400, str(exc)) from None
        return FOREVER if seconds < 0 else seconds
    go_type = {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}
    raise FieldError(400, f"Unsupported type: '{go_type.get(type(value), 'unknown')}'")


# -- options -----------------------------------------------------------------------------


def check_options(options: Mapping[str, Any]) -> None:
    """``Options.FromMap``: a known option of the wrong type is a 500 with Go's message."""
    for key, value in options.items():
        kind = OPTION_KINDS.get(key)
        if kind is None or value is None:
            continue  # unknown options are ignored (Ollama logs them); null keeps the default
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind in ("integer", "float32") and is_number:
            continue
        if kind == "boolean" and isinstance(value, bool):
            continue
        if kind == "array" and isinstance(value, list):
            if all(isinstance(item, str) for item in value):
                continue
            raise FieldError(500, f'option "{key}" must be of an array of strings')
        raise FieldError(500, f'option "{key}" must be of type {kind}')


# -- images ------------------------------------------------------------------------------

_B64_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


@dataclass(frozen=True)
class _Significant:
    char: str
    index: int


def go_base64_decode(text: str) -> bytes:
    """``base64.StdEncoding`` as Go's JSON decoder applies it to ``[]byte`` fields.

    Raises ValueError("illegal base64 data at input byte N") with Go's offset for the
    usual mistakes: a foreign character (a ``data:`` prefix fails at byte 4), misplaced
    padding, a length that is not a multiple of four.
    """
    chars = [_Significant(c, i) for i, c in enumerate(text) if c not in "\r\n"]
    for start in range(0, len(chars), 4):
        quantum = chars[start : start + 4]
        for offset, item in enumerate(quantum):
            if item.char == "=":
                if offset < 2:
                    raise ValueError(f"illegal base64 data at input byte {item.index}")
                if offset == 2 and (len(quantum) < 4 or quantum[3].char != "="):
                    at = quantum[3].index if len(quantum) == 4 else len(text)
                    raise ValueError(f"illegal base64 data at input byte {at}")
                if start + 4 < len(chars):
                    raise ValueError(f"illegal base64 data at input byte {chars[start + 4].index}")
                break
            if item.char not in _B64_ALPHABET:
                raise ValueError(f"illegal base64 data at input byte {item.index}")
        else:
            if len(quantum) < 4:
                raise ValueError(f"illegal base64 data at input byte {len(text) - len(quantum)}")
    try:
        return base64.b64decode("".join(c.char for c in chars), validate=True)
    except binascii.Error as exc:  # not expected after the checks above
        raise ValueError(f"illegal base64 data: {exc}") from None


def check_images(images: list[Any], where: str) -> None:
    for image in images:
        if image is None:
            continue  # null decodes to an empty image
        if not isinstance(image, str):
            raise _type_error(image, where, "api.ImageData")
        try:
            go_base64_decode(image)
        except ValueError as exc:
            raise FieldError(400, str(exc)) from None


def decode_images(images: list[Any]) -> list[bytes]:
    """The images' bytes (the request was checked by :func:`check_struct` before)."""
    return [go_base64_decode(image) for image in images if isinstance(image, str)]
