"""`%ollama fix [N]`: the prompt that asks a model to explain a cell's error and give the
corrected cell. Pure functions of plain values (the error's text comes from `_errors`).

What is sent: the failing cell's source and traceback as `{Err}` has them, then the
notebook variables that cell uses, each with its type and shape only (a DataFrame's
columns and dtypes, an array's shape and dtype, a container's length: never a value),
and the names it uses that the notebook does not define. The values of
`$OLLAMA_API_KEY` / `$OPENAI_API_KEY` are removed from all of it: a cell that printed
the key, or a traceback that shows it, must not send it to the model's host.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

FIX_INSTRUCTION = (
    "A cell of my Jupyter notebook raised the error below. Explain its cause in a few"
    " sentences, then give the whole corrected cell as one ```python block."
)
SECRET_VARIABLES = ("OLLAMA_API_KEY", "OPENAI_API_KEY")
REDACTED = "[redacted]"
MAX_VARIABLES = 40
MAX_COLUMNS = 30
LINE_LIMIT = 400  # characters of one variable's line
_IDENTIFIER = re.compile(r"[^\W\d]\w*")
# Names the shell itself puts in the namespace: not the user's variables.
_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def error_of(errors: Mapping[int, str], count: int | None) -> tuple[int, str] | str:
    """(execution count, text) of cell `count`'s error (None: the most recent one), or the
    line that says there is none."""
    if not errors:
        return "no error recorded since %load_ext ollama_nb: nothing to fix; nothing was sent"
    if count is None:
        count = next(reversed(list(errors)))
    if count not in errors:
        recorded = ", ".join(str(n) for n in errors)
        return (
            f"no error recorded for cell [{count}] (cells with an error: {recorded});"
            " nothing was sent"
        )
    return count, errors[count]


def fix_prompt(error: str, variables: list[str], environ: Mapping[str, str] | None = None) -> str:
    """The prompt: the instruction, the error's text, the variables' lines; secrets out."""
    parts = [FIX_INSTRUCTION, error]
    if variables:
        heading = "Notebook variables the cell uses (type and shape only):"
        parts.append("\n".join([heading, *variables]))
    return redact("\n\n".join(parts), environ)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` without the values of the API-key variables."""
    env = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        secret = (env.get(name) or "").strip()
        if len(secret) >= 4:  # a 1-3 character "key" would blank out ordinary text
            text = text.replace(secret, REDACTED)
    return text


def names_used(source: str) -> tuple[list[str], set[str]]:
    """(the names `source` reads, in the order they first appear; the names it binds).
    Source that does not parse (a SyntaxError cell) gives its identifiers, binding none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return list(dict.fromkeys(_IDENTIFIER.findall(source))), set()
    read: list[tuple[int, int, str]] = []
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                read.append((node.lineno, node.col_offset, node.id))
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return list(dict.fromkeys(name for _, _, name in sorted(read))), bound


def variable_lines(source: str, namespace: Mapping[str, Any]) -> list[str]:
    """One line per notebook variable `source` uses (type and shape), and one per name
    it reads that neither the notebook nor the cell defines."""
    used, bound = names_used(source)
    lines = []
    for name in used:
        if name.startswith("_") or name in _SHELL_NAMES:
            continue
        if name in namespace:
            lines.append(_cut(f"- {name}: {type_and_shape(namespace[name])}"))
        elif name not in bound and not hasattr(builtins, name):
            lines.append(f"- {name}: not defined in the notebook")
        if len(lines) == MAX_VARIABLES:
            lines.append("- … more names left out")
            break
    return lines


def type_and_shape(value: Any) -> str:
    """What `value` is, without any of its values: type, shape or length, dtype, a
    DataFrame's columns, a function's signature."""
    try:
        return _type_and_shape(value)
    except Exception:  # a property that raises, a broken __len__: the type alone
        return _type_name(value)


def _type_and_shape(value: Any) -> str:
    if inspect.ismodule(value):
        return f"module {value.__name__}"
    if inspect.isclass(value):
        return f"class {value.__qualname__}"
    if inspect.isroutine(value):
        return f"function{_signature(value)}"
    kind = _type_name(value)
    if _is(value, "pandas", "DataFrame"):
        rows, cols = value.shape
        shown = [
            f"{_short(value.columns[i])} ({value.dtypes.iloc[i]})"
            for i in range(min(cols, MAX_COLUMNS))
        ]
        more = f", … {cols - MAX_COLUMNS} more" if cols > MAX_COLUMNS else ""
        return f"{kind}, shape ({rows}, {cols}); columns: {', '.join(shown)}{more}"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        dtype = getattr(value, "dtype", None)
        return f"{kind}, shape {tuple(shape)}" + (f", dtype {dtype}" if dtype is not None else "")
    if hasattr(type(value), "__len__"):
        return f"{kind} of length {len(value)}"
    return kind


def _signature(value: Any) -> str:
    try:
        return str(inspect.signature(value))
    except (TypeError, ValueError):
        return "(…)"


def _is(value: Any, module: str, name: str) -> bool:
    """isinstance(value, module.name), only if that module is already imported."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(value, cls)


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def _short(label: Any) -> str:
    text = repr(label)
    return text if len(text) <= 40 else text[:39] + "…"


def _cut(line: str) -> str:
    return line if len(line) <= LINE_LIMIT else line[: LINE_LIMIT - 1] + "…"
