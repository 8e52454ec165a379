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

import keyword
import re
import string
from collections.abc import Mapping
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
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
    out: list[str] = []
    open_escapes = 0  # `{{` seen whose `}}` has not come yet
    i, n = 0, len(template)
    while i < n:
        brace = _next_brace(template, i)
        if brace < 0:
            out.append(template[i:])
            break
        out.append(template[i:brace])
        if template.startswith("{{", brace):
            out.append("{")
            open_escapes += 1
            i = brace + 2
        elif template.startswith("}}", brace) and open_escapes:
            out.append("}")
            open_escapes -= 1
            i = brace + 2
        elif template[brace] == "{" and (match := _field_at(template, brace)):
            out.append(_fill_field(match, namespace))
            i = match.end()
        else:
            out.append(template[brace])
            i = brace + 1
    return "".join(out)


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
    return match


def _fill_field(match: re.Match[str], namespace: Mapping[str, Any]) -> str:
    name = match["name"]
    if name not in namespace:
        raise PromptVariableError(
            f"the prompt uses {{{name}}}, but {name!r} is not defined in the notebook;"
            f" write {{{{{name}}}}} to send it as written, or use --no-vars"
        )
    shown = match.group(0)
    try:
        value, _ = _FORMATTER.get_field(match["field"], (), namespace)
        if match["conversion"]:
            value = _FORMATTER.convert_field(value, match["conversion"])
        spec = match["spec"] or ""
        if "{" in spec:
            spec = fill_prompt(spec, namespace)
        return format(value, spec)
    except PromptVariableError:
        raise
    except Exception as exc:  # a missing key or attribute, a spec the value refuses
        reason = str(exc) or type(exc).__name__
        raise PromptVariableError(
            f"cannot fill {shown} in the prompt ({type(exc).__name__}: {reason});"
            f" write {{{shown}}} to send it as written, or use --no-vars"
        ) from None
