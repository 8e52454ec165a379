"""Prompt variables: `{name}` in a prompt becomes the notebook's value of `name`.

Only identifier fields are replaced — `{name}`, `{name.attr}`, `{name[key]}` and chains
of these, with an optional `!r`/`!s`/`!a` conversion and `:spec` — with `str.format`'s
own semantics for each field. Any other brace text is sent exactly as written, so pasted
code, JSON and regex quantifiers need no escaping: `{'a': 1}`, `{"k": 2}`, `{}`, `{3}`,
`x{2,3}`, `\\frac{1}{2}`. (LaTeX with letters, `\\frac{a}{b}`, reads as fields: send such
a prompt with `--no-vars`.) Python keywords are not variables: `{None}` stays as written.

`{{` gives a literal `{`, and a `}}` that closes it a literal `}` (so `{{name}}` sends
`{name}`); a `}}` that closes nothing opened by `{{` is sent as written, which keeps the
closing braces of nested JSON such as `{"a": {"b": 1}}`. Pure functions, no I/O.
"""

from __future__ import annotations

import _string  # str.format's own field-name splitter (what string.Formatter uses)
import keyword
import re
import string
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

# Any Python identifier, non-ASCII included (`{α}`, `{数据}`); `_field_at` checks it with
# str.isidentifier, which this approximates.
_NAME = r"[^\W\d]\w*"
# A `[key]` that is an integer literal, negative too, indexes as an int: `{In[-2]}`.
_INT_KEY = re.compile(r"-?[0-9]+")
# A replacement field at the position of its opening brace. The spec may itself hold
# identifier fields (`{value:>{width}}`), as str.format allows, one level deep.
_FIELD = re.compile(
    rf"""\{{
    (?P<field>(?P<name>{_NAME})(?:\.{_NAME}|\[[^\[\]{{}}]*\])*)
    (?:!(?P<conversion>[rsa]))?
    (?::(?P<spec>(?:[^{{}}]|\{{{_NAME}\}})*))?
    \}}""",
    re.VERBOSE,
)


class PromptVariableError(ValueError):
    """A prompt field names a variable that is not defined, or cannot be filled."""


_FORMATTER = string.Formatter()


def fill_prompt(template: str, namespace: Mapping[str, Any]) -> str:
    """Replace the identifier fields of `template` with values from `namespace`.

    >>> fill_prompt("Capital of {country}? As JSON: {'capital': ...}", {"country": "Peru"})
    "Capital of Peru? As JSON: {'capital': ...}"
    """
    return fill_parts(template_parts(template), namespace)


class _Field(NamedTuple):
    """A replacement field, read once from its `_FIELD` match (a batch fills it per
    element: a match's groups would be looked up again each time)."""

    shown: str  # as written, for messages: `{name.attr!r:>{width}}`
    name: str
    path: str  # `name.attr[key]...`
    conversion: str | None
    spec: str


# A template read once: its literal text, and its fields.
Parts = list[str | _Field]


def template_parts(template: str) -> Parts:
    """`template` split into literal text (escapes resolved) and fields: what decides the
    split is the template alone, so a batch splits it once and fills it per element."""
    parts: Parts = []
    open_escapes = 0  # `{{` seen whose `}}` has not come yet
    i, n = 0, len(template)
    while i < n:
        brace = _next_brace(template, i)
        if brace < 0:
            parts.append(template[i:])
            break
        parts.append(template[i:brace])
        if template.startswith("{{", brace):
            parts.append("{")
            open_escapes += 1
            i = brace + 2
        elif template.startswith("}}", brace) and open_escapes:
            parts.append("}")
            open_escapes -= 1
            i = brace + 2
        elif template[brace] == "{" and (match := _field_at(template, brace)):
            parts.append(_Field(match[0], match["name"], match["field"], match["conversion"],
                                match["spec"] or ""))  # fmt: skip
            i = match.end()
        else:
            parts.append(template[brace])
            i = brace + 1
    return _joined_literals(parts)


def _joined_literals(parts: Parts) -> Parts:
    """Runs of literal text as one str each (fewer pieces to join per fill)."""
    joined: Parts = []
    for part in parts:
        if isinstance(part, str) and joined and isinstance(joined[-1], str):
            joined[-1] += part
        elif part:  # a field (a non-empty tuple), or text that is not empty
            joined.append(part)
    return joined


def fill_parts(parts: Parts, namespace: Mapping[str, Any]) -> str:
    """The prompt `template_parts` split, its fields filled (left to right) from
    `namespace`."""
    return "".join(
        [part if isinstance(part, str) else _fill_field(part, namespace) for part in parts]
    )


def fields(template: str) -> list[str]:
    """The variable names `template` would read, in order (for messages and checks)."""
    names: list[str] = []
    i = 0
    while (brace := _next_brace(template, i)) >= 0:
        if template.startswith(("{{", "}}"), brace):
            i = brace + 2
        elif template[brace] == "{" and (match := _field_at(template, brace)):
            names.append(match["name"])
            i = match.end()
        else:
            i = brace + 1
    return names


def _next_brace(text: str, start: int) -> int:
    opening, closing = text.find("{", start), text.find("}", start)
    if opening < 0 or closing < 0:
        return max(opening, closing)
    return min(opening, closing)


def _field_at(template: str, position: int) -> re.Match[str] | None:
    match = _FIELD.match(template, position)
    if match is None or keyword.iskeyword(match["name"]):
        return None  # `{None}`, `{True}`: a Python literal in pasted code, not a variable
    if not match["name"].isidentifier():
        return None
    return match


def _lookup(name: str, namespace: Mapping[str, Any]) -> str | None:
    """The key `name` has in `namespace`: as written, or NFKC-normalised as Python stores
    the identifiers of code (`ﬁ` is `fi`); None if neither is there."""
    if name in namespace:
        return name
    normal = unicodedata.normalize("NFKC", name)
    return normal if normal in namespace else None


def _get_field(field: str, name: str, namespace: Mapping[str, Any]) -> Any:
    """str.format's lookup of `name.attr[key]...`, except that an integer literal key,
    negative too, is an int (`{In[-2]}`; str.format would pass "-2" as a string)."""
    if field == name:  # a plain `{name}`, the usual field: nothing to split
        return namespace[name]
    _, rest = _string.formatter_field_name_split(field)
    value = namespace[name]
    for is_attribute, key in rest:
        if is_attribute:
            value = getattr(value, key)
        else:
            if isinstance(key, str) and _INT_KEY.fullmatch(key):
                key = int(key)
            value = value[key]
    return value


def _fill_field(field: _Field, namespace: Mapping[str, Any]) -> str:
    name = field.name
    key = _lookup(name, namespace)
    if key is None:
        raise PromptVariableError(
            f"the prompt uses {{{name}}}, but {name!r} is not defined in the notebook;"
            f" write {{{{{name}}}}} to send it as written"
        )
    shown = field.shown
    try:
        value = _get_field(field.path, key, namespace)
        if field.conversion:
            value = _FORMATTER.convert_field(value, field.conversion)
        spec = field.spec
        if "{" in spec:
            spec = fill_prompt(spec, namespace)
        return format(value, spec)
    except PromptVariableError:
        raise
    except Exception as exc:  # a missing key or attribute, a spec the value refuses
        reason = str(exc) or type(exc).__name__
        raise PromptVariableError(
            f"cannot fill {shown} in the prompt ({type(exc).__name__}: {reason});"
            f" write {{{shown}}} to send it as written"
        ) from None
