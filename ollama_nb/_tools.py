"""Tools: the notebook's own functions, described for the model, checked, run and answered.

What is here is protocol-neutral: a `Tool` (a callable and its JSON schema), the checks
of a call's arguments against that schema, running one call in the kernel, and the
result as the text sent back. The loop that asks the model again is `_tool_loop`'s.

The schema is built here from `inspect.signature` and the type hints, not by a library:
pydantic (whose `TypeAdapter` would do it) is not a dependency of this package and is
~7 MB compiled, and the official client's `convert_function_to_tool` needs pydantic too,
flattens every type to a `type` string (no `items`, no `enum`: `Literal` and `Enum`
choices are lost) and treats a parameter without a hint as a string. The walk below
covers exactly the types INTERFACE.md lists and emits only fields that Ollama's
`api.ToolProperty` keeps (`type`, `anyOf`, `items`, `enum`, `properties`, `required`,
`description`); tests compare it with the official client's output where both apply.
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import re
import time
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._tool_interrupt import SigintNote, interrupt_raises_here

MAX_RESULT_CHARS = 16 * 1024  # a result sent back longer than this is cut, with a marker
SHOWN_CHARS = 120  # a call or result as the view and the record show it
DEFAULT_MAX_STEPS = 8
DECLINED = "the user declined to run this call"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_SECTIONS = ("args", "arguments", "parameters", "params", "keyword args", "keyword arguments")
_OTHER_SECTIONS = ("returns", "return", "yields", "raises", "examples", "example", "notes",
                   "note", "see also", "references", "attributes", "warnings")  # fmt: skip


class ToolError(ValueError):
    """A callable that cannot be offered as a tool (one line, naming it)."""


class ToolInterrupted(Exception):
    """Interrupt (■) arrived while a tool ran: the loop ends, as an interrupted request."""


@dataclass(frozen=True)
class Tool:
    """One callable offered to the model, and the JSON schema of its parameters."""

    name: str
    func: Callable[..., Any]
    description: str
    parameters: dict[str, Any]
    enums: Mapping[str, type[enum.Enum]] = field(default_factory=dict)  # converted on call
    takes_any: bool = False  # **kwargs: extra arguments are passed on, not refused

    def spec(self) -> dict[str, Any]:
        """The `tools` entry of an /api/chat request."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass
class ToolCall:
    """One call the model asked for: `_ollama.tool_calls` holds these."""

    name: str
    arguments: dict[str, Any]
    result: str | None = None  # the text sent back to the model (None: not yet)
    error: str | None = None  # why it was not run, or what it raised
    skipped: bool = False  # --confirm: the user chose Skip
    elapsed: float = 0.0  # seconds the function ran
    id: str | None = None  # the server's call id, sent back as tool_call_id
    state: str = "pending"  # pending, running, done, failed, skipped (for the view)

    def shown(self) -> str:
        return call_text(self.name, self.arguments)

    def outcome(self) -> str:
        """`→ result` or `✗ error`, shortened."""
        if self.skipped:
            return "skipped (declined)"
        if self.error is not None:
            return "✗ " + shorten(self.error)
        if self.result is None:
            return "running…"
        return "→ " + shorten(self.result)

    def message(self) -> dict[str, Any]:
        """The `tool` message that answers this call."""
        content = self.result if self.result is not None else f"error: {self.error or '?'}"
        message: dict[str, Any] = {"role": "tool", "content": content, "tool_name": self.name}
        if self.id:
            message["tool_call_id"] = self.id
        return message


# -- describing a callable -------------------------------------------------------------


def describe_all(funcs: Sequence[Any]) -> dict[str, Tool]:
    """Each callable described, by name; ToolError for one that cannot be, or a name twice."""
    tools: dict[str, Tool] = {}
    for func in funcs:
        tool = describe(func)
        if tool.name in tools:
            raise ToolError(f"two tools are named {tool.name!r}: tool names must differ")
        tools[tool.name] = tool
    return tools


def describe(func: Any) -> Tool:
    """`func` as a tool: its name, its docstring's first paragraph, its parameters."""
    shown = _shown(func)
    if not callable(func):
        raise ToolError(f"tool {shown} is not callable ({type(func).__name__})")
    target = func.func if isinstance(func, functools.partial) else func
    name = getattr(target, "__name__", None) or type(target).__name__
    if not _NAME.match(name):
        raise ToolError(f"tool {shown}: {name!r} is not a usable tool name (use a def function)")
    try:
        signature = inspect.signature(func, eval_str=True)
    except (ValueError, TypeError) as exc:
        raise ToolError(f"tool {name}: cannot read its signature ({exc})") from None
    except Exception as exc:  # a string annotation that does not evaluate
        raise ToolError(f"tool {name}: cannot read its type hints ({exc})") from None
    doc = inspect.getdoc(target) or ""
    summary, described = parse_docstring(doc)
    properties: dict[str, Any] = {}
    required: list[str] = []
    enums: dict[str, type[enum.Enum]] = {}
    takes_any = False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            takes_any = True
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.POSITIONAL_ONLY):
            if parameter.kind is parameter.POSITIONAL_ONLY and parameter.default is parameter.empty:
                raise ToolError(
                    f"tool {name}: parameter {parameter.name!r} is positional-only;"
                    " a model passes arguments by name"
                )
            continue
        hint = parameter.annotation
        try:
            schema = type_schema(hint) if hint is not parameter.empty else {}
        except ToolError as exc:
            raise ToolError(f"tool {name}: parameter {parameter.name!r}: {exc}") from None
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            enums[parameter.name] = hint
        elif _optional_enum(hint) is not None:
            enums[parameter.name] = _optional_enum(hint)  # type: ignore[assignment]
        if parameter.default is None and isinstance(schema.get("type"), str):
            schema = {**schema, "type": [schema["type"], "null"]}  # `x: str = None`
        if parameter.name in described and "description" not in schema:
            schema = {**schema, "description": described[parameter.name]}
        properties[parameter.name] = schema
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return Tool(name, func, summary, parameters, enums, takes_any)


def _shown(func: Any) -> str:
    name = getattr(func, "__name__", None)
    if isinstance(func, functools.partial):
        name = f"partial({getattr(func.func, '__name__', '?')})"
    return name or repr(func)[:60]


def _optional_enum(hint: Any) -> type[enum.Enum] | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if _is_union(hint) and len(args) == 1 and isinstance(args[0], type):
        return args[0] if issubclass(args[0], enum.Enum) else None
    return None


def _is_union(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType)


_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                           type(None): "null", None: "null"}  # fmt: skip


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint; ToolError for one it cannot describe."""
    if hint is Any or hint is object:
        return {}
    if typing.get_origin(hint) is typing.Annotated:  # Annotated[int, "a description"]
        base, *extra = typing.get_args(hint)
        schema = type_schema(base)
        notes = [e for e in extra if isinstance(e, str)]
        return {**schema, "description": " ".join(notes)} if notes else schema
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        return {**_common_type(values), "enum": values}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return {**_common_type(list(args)), "enum": list(args)}
    if _is_union(hint):
        members = [type_schema(a) for a in args]
        kinds = [m.get("type") for m in members]
        if all(isinstance(k, str) and len(m) == 1 for k, m in zip(kinds, members, strict=True)):
            return {"type": kinds}  # Optional[str] -> {"type": ["string", "null"]}
        return {"anyOf": members}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset,
                                                           Sequence, typing.Sequence):  # fmt: skip
        schema: dict[str, Any] = {"type": "array"}
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1 and items[0] is not Any:
            schema["items"] = type_schema(items[0])
        return schema
    if hint is dict or origin in (dict, Mapping, typing.Mapping):
        return {"type": "object"}
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint)
        return {
            "type": "object",
            "properties": {k: type_schema(v) for k, v in hints.items()},
            "required": sorted(getattr(hint, "__required_keys__", hints)),
        }
    shown = getattr(hint, "__name__", None) or repr(hint)
    raise ToolError(
        f"cannot describe type {shown} to a model (use str, int, float, bool, list, dict,"
        " Literal, Enum or Optional)"
    )


def _common_type(values: list[Any]) -> dict[str, Any]:
    kinds = {_SIMPLE.get(type(v)) for v in values}
    return {"type": kinds.pop()} if len(kinds) == 1 and None not in kinds else {}


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {parameter: description}) of a Google- or NumPy-style docstring."""
    lines = doc.expandtabs().splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _section(line, None) is not None:
            break
        summary.append(line.strip())
    described: dict[str, str] = {}
    i = 0
    while i < len(lines):
        kind = _section(lines[i], lines[i + 1] if i + 1 < len(lines) else None)
        if kind is None:
            i += 1
            continue
        i += 2 if kind == "numpy" else 1
        i = _entries(lines, i, described, numpy=kind == "numpy")
    return " ".join(summary), described


def _section(line: str, underline: str | None) -> str | None:
    """'google' / 'numpy' for a parameters section header, 'other' for another, else None."""
    title = line.strip().lower()
    if underline is not None and set(underline.strip()) == {"-"}:
        return "numpy" if title in _SECTIONS else "other"
    if title.endswith(":") and title[:-1] in (*_SECTIONS, *_OTHER_SECTIONS):
        return "google" if title[:-1] in _SECTIONS else "other"
    return None


def _entries(lines: list[str], i: int, described: dict[str, str], numpy: bool) -> int:
    """Read the entries of one section from line i; returns where the section ends."""
    base: int | None = None
    name: str | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            if (
                numpy
                and i < len(lines)
                and _section(lines[i], lines[i + 1] if i + 1 < len(lines) else None)
            ):
                break
            continue
        indent = len(line) - len(line.lstrip())
        if base is None:
            base = indent
        if indent < base or _section(line, lines[i + 1] if i + 1 < len(lines) else None):
            break
        if indent == base:
            if numpy:  # `name : type`; the description is on the indented lines below
                head, rest = line.strip().split(" : ")[0].split(":")[0], ""
            else:  # `name (type): description`
                head, _, rest = line.strip().partition(":")
            name = head.split("(")[0].strip().lstrip("*")
            if name:
                described[name] = rest.strip()
        elif name:
            described[name] = (described[name] + " " + line.strip()).strip()
        i += 1
    return i


# -- checking and running a call -------------------------------------------------------


def read_calls(tool_calls: Any) -> list[ToolCall]:
    """The calls of an assistant message (`tool_calls` as Ollama sends them); arguments
    given as a JSON string are read; what cannot be read becomes the call's error."""
    calls: list[ToolCall] = []
    for entry in tool_calls if isinstance(tool_calls, list) else []:
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(function, dict):
            calls.append(ToolCall("?", {}, error="a tool call without a function"))
            continue
        name = str(function.get("name") or "")
        arguments = function.get("arguments")
        call_id = entry.get("id")
        call = ToolCall(name, {}, id=str(call_id) if call_id else None)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                call.error = f"arguments are not a JSON object: {shorten(arguments)}"
                arguments = {}
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            call.error = f"arguments are not a JSON object: {shorten(repr(arguments))}"
            arguments = {}
        call.arguments = arguments
        calls.append(call)
    return calls


def check_call(call: ToolCall, tools: Mapping[str, Tool]) -> str | None:
    """Why the call must not run (sent back to the model), or None."""
    if call.error is not None:
        return call.error
    tool = tools.get(call.name)
    if tool is None:
        known = ", ".join(tools) or "none"
        return f"unknown tool {call.name!r}; the tools are: {known}"
    properties = tool.parameters.get("properties", {})
    missing = [p for p in tool.parameters.get("required", []) if p not in call.arguments]
    if missing:
        return f"missing required argument{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    extra = [a for a in call.arguments if a not in properties]
    if extra and not tool.takes_any:
        return f"unexpected argument{'s' if len(extra) > 1 else ''}: {', '.join(extra)}"
    for name, value in call.arguments.items():
        if name in properties:
            problem = check_value(properties[name], value)
            if problem is not None:
                return f"argument {name}: {problem}"
    return None


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_value(schema: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` does not fit `schema` (the subset `type_schema` makes), or None."""
    if "anyOf" in schema:
        if all(check_value(s, value) is not None for s in schema["anyOf"]):
            return f"{shorten(json.dumps(value, default=repr))} fits none of the allowed types"
        return None
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v, default=repr) for v in schema["enum"])
        return f"{shorten(json.dumps(value, default=repr))} is not one of {allowed}"
    kind = schema.get("type")
    if kind is None:
        return None
    kinds = kind if isinstance(kind, list) else [kind]
    if not any(_JSON_TYPES.get(k, lambda v: True)(value) for k in kinds):
        want = " or ".join(kinds)
        return (
            f"expected {want}, got {_json_type(value)} {shorten(json.dumps(value, default=repr))}"
        )
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problem = check_value(schema["items"], item)
            if problem is not None:
                return f"item {i}: {problem}"
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                problem = check_value(schema["properties"][key], item)
                if problem is not None:
                    return f"{key}: {problem}"
    return None


def _json_type(value: Any) -> str:
    for name, test in _JSON_TYPES.items():
        if name != "integer" and test(value):
            return name
    return type(value).__name__


OnCaller = Callable[[Callable[[], Any]], Awaitable[Any]]


async def run_call(
    call: ToolCall,
    tools: Mapping[str, Tool],
    on_caller: OnCaller | None = None,
    note: SigintNote | None = None,
) -> None:
    """Check and run one call, filling its result or error. Raises ToolInterrupted when
    Interrupt (■) arrives while the function runs; anything the function raises becomes
    the call's error (`ExcType: message`). `on_caller` runs the function on the thread
    that owns the cell (the synchronous path drives the request from a worker thread);
    None: here."""
    problem = check_call(call, tools)
    if problem is not None:
        call.error, call.state = problem, "failed"
        return
    tool = tools[call.name]
    arguments = dict(call.arguments)
    for name, kind in tool.enums.items():
        if arguments.get(name) is not None:
            arguments[name] = kind(arguments[name])

    def invoke() -> tuple[str, Any]:
        try:
            with interrupt_raises_here(note):
                return "value", tool.func(**arguments)
        except KeyboardInterrupt:
            return "interrupted", None
        except Exception as exc:
            return "raised", exc

    call.state = "running"
    started = time.monotonic()
    outcome, value = await on_caller(invoke) if on_caller is not None else invoke()
    if outcome == "value" and inspect.isawaitable(value):  # an async def tool
        try:
            value = await value
        except Exception as exc:
            outcome, value = "raised", exc
    call.elapsed = time.monotonic() - started
    if outcome == "interrupted":
        call.error, call.state = "interrupted", "failed"
        raise ToolInterrupted(call.name)
    if outcome == "raised":
        call.error, call.state = error_text(value), "failed"
    else:
        call.result, call.state = encode_result(value), "done"


def error_text(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return cut(text)


def encode_result(value: Any) -> str:
    """What goes back to the model: a str as it is, else JSON where the value is
    JSON-serialisable, else `str(value)`; cut at `MAX_RESULT_CHARS`."""
    if isinstance(value, str):
        return cut(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        try:
            text = str(value)
        except Exception as exc:  # a result that cannot even be shown: say so instead
            text = f"<a {type(value).__name__} that str() cannot show: {error_text(exc)}>"
    return cut(text)


def cut(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… cut: {len(text) - limit:,} more characters]"


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_text(name: str, arguments: Mapping[str, Any], limit: int = SHOWN_CHARS) -> str:
    """`name(a=1, b='x')`, shortened."""
    shown = ", ".join(f"{k}={shorten(repr(v), 40)}" for k, v in arguments.items())
    return shorten(f"{name}({shown})", limit)
