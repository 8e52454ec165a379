"""Describe notebook values for a prompt: `--context NAME` and the API's `context=`.

Each value becomes a compact, model-friendly text: a DataFrame's shape, columns (dtype,
nulls) and first rows as a Markdown table; a Series likewise; an array's shape, dtype and
min/max/mean; a container's type, length and leading items; a string's text; a
function's or class's signature, docstring and short source; else `repr()`. Each text is
at most `limit` characters, cut with a marker saying how much was left out.

The cost does not grow with the value: only the leading rows, items or characters are
ever turned into text (no `str(df)`, no `repr` of a whole list), so a 5,000,000-row frame
or a 200 MB string is described at once. pandas, numpy, matplotlib and PIL are never
imported here: a value is one of theirs only if its module is already loaded. A value
that breaks while described (its repr raises, a property raises) is described as far as
was safe, and the text says so. Pure functions, no I/O.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import reprlib
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CHARS = 4000  # OllamaMagics.context_chars
ROWS = 5  # rows of a frame's or series' table
COLUMNS = 30  # columns listed and tabled, at most
CELL = 40  # characters of one table cell
ITEMS = 10  # leading items of a container
VALUES = 8  # leading values of an array
# Counting nulls costs ~1 ns a value for numbers, dates and categories, ~80 ns for text
# and objects (measured, pandas 3): a frame's columns share this many ns (~40 ms); a
# column whose whole count would cost more is counted over its leading rows, and says so.
NULL_BUDGET = 40_000_000
TEXT_COST = 80
STAT_VALUES = 10_000_000  # array values over which min/max/mean are computed, at most
SHORT_SOURCE = 1500  # a function's source is shown when at most this long


class ContextError(ValueError):
    """A value that cannot go in as context (an image: it goes with --image)."""


@dataclass(frozen=True)
class Description:
    name: str
    summary: str  # for the record's header: "DataFrame 1,000×5"
    text: str  # for the prompt

    @property
    def label(self) -> str:
        return f"{self.name} ({self.summary})"


def describe_all(values: Mapping[str, Any], limit: int = DEFAULT_CHARS) -> list[Description]:
    return [describe(name, value, limit) for name, value in values.items()]


def prompt_with_context(prompt: str, descriptions: list[Description]) -> str:
    """The descriptions, then the prompt."""
    if not descriptions:
        return prompt
    blocks = "\n\n".join(d.text for d in descriptions)
    return f"Context from the notebook:\n\n{blocks}\n\n{prompt}"


def describe(name: str, value: Any, limit: int = DEFAULT_CHARS) -> Description:
    """`value` described in at most `limit` characters; ContextError for an image."""
    refuse_image(name, value)
    try:
        summary, body, hidden = _describe(value, limit)
    except Exception as exc:
        summary = _type_name(value)
        body = f"{summary} (could not be described: {_one_line(exc)})"
        hidden = 0
    return Description(name, summary, _cap(f"`{name}`: {body}", limit, hidden))


def refuse_image(name: str, value: Any) -> None:
    kind = _image_kind(value)
    if kind:
        raise ContextError(
            f"--context {name}: {name} is {kind}, an image; attach it with --image {name}"
            " (images= in the Python API)"
        )


def _image_kind(value: Any) -> str | None:
    if _is(value, "matplotlib.figure", "Figure"):
        return "a matplotlib Figure"
    if _is(value, "PIL.Image", "Image"):
        return "a PIL image"
    if _is(value, "numpy", "ndarray"):
        shape = value.shape
        if (
            value.ndim == 3
            and shape[2] in (3, 4)
            and min(shape[0], shape[1]) >= 8
            and value.dtype.name == "uint8"
        ):
            return f"an image-shaped array ({shape[0]}×{shape[1]}×{shape[2]} uint8)"
    return None


def _is(value: Any, module: str, name: str) -> bool:
    """isinstance(value, module.name), only if that module is already imported."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(value, cls)


# -- per type -------------------------------------------------------------------------


def _describe(value: Any, limit: int) -> tuple[str, str, int]:
    """(summary, text, characters of the value not in the text yet)."""
    if _is(value, "pandas", "DataFrame"):
        return _frame(value)
    if _is(value, "pandas", "Series"):
        return _series(value)
    if _is(value, "numpy", "ndarray"):
        return _array(value)
    if isinstance(value, str):
        shown = value[:limit]
        summary = f"str of {len(value):,} characters"
        return summary, f"{summary}\n{shown}", len(value) - len(shown)
    if isinstance(value, (bytes, bytearray)):
        summary = f"{type(value).__name__} of {len(value):,} bytes"
        return summary, f"{summary}\n{_short(value)}", 0
    if isinstance(value, (dict, list, tuple, set, frozenset)) or _is_mapping(value):
        return _container(value)
    if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, _partial_type()):
        return _callable(value)
    return _other(value)


def _frame(df: Any) -> tuple[str, str, int]:
    rows, cols = df.shape
    summary = f"DataFrame {rows:,}×{cols:,}"
    shown = min(cols, COLUMNS)
    lines = [f"pandas DataFrame, {rows:,} rows × {cols:,} columns", "Columns (dtype, nulls):"]
    dtypes = df.dtypes
    for i in range(shown):
        nulls = _nulls(df.iloc[:, i], NULL_BUDGET // max(shown, 1))
        lines.append(f"- {_cell(df.columns[i])}: {dtypes.iloc[i]}, {nulls}")
    if cols > shown:
        lines.append(f"- … {cols - shown:,} more columns")
    head = df.iloc[: min(ROWS, rows), :shown]
    if rows:
        lines.append(f"First {len(head)} rows:" if rows > len(head) else "Rows:")
        lines.extend(_table(head, [_cell(c) for c in head.columns]))
    return summary, "\n".join(lines), 0


def _nulls(column: Any, budget: int) -> str:
    """How many nulls `column` holds, counted within `budget` ns (see NULL_BUDGET)."""
    dtype = column.dtype
    rows = len(column)
    if type(dtype).__module__.startswith("numpy") and dtype.kind in "iub":
        return "0 nulls"  # a plain numpy int or bool column cannot hold one
    cost = 1 if dtype.kind in "fcmM" or str(dtype) == "category" else TEXT_COST
    if rows * cost <= budget:
        return _plural(int(column.isna().sum()), "null")
    leading = budget // cost
    if leading < 1000:
        return "nulls not counted (large frame)"
    count = int(column.iloc[:leading].isna().sum())
    return f"{_plural(count, 'null')} in the first {leading:,} rows (not counted beyond)"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _table(head: Any, columns: list[str]) -> list[str]:
    index = _cell(head.index.name) if head.index.name is not None else ""
    lines = ["| " + " | ".join([index, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in head.itertuples(index=True, name=None):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _series(series: Any) -> tuple[str, str, int]:
    size = len(series)
    summary = f"Series {size:,}"
    name = "" if series.name is None else f" {_cell(series.name)!r}"
    nulls = _nulls(series, NULL_BUDGET)
    lines = [f"pandas Series{name}, {size:,} values, dtype {series.dtype}, {nulls}"]
    if size:
        head = series.iloc[:ROWS].to_frame()
        lines.append(f"First {len(head)} values:" if size > len(head) else "Values:")
        lines.extend(_table(head, ["" if series.name is None else _cell(series.name)]))
    return summary, "\n".join(lines), 0


def _array(array: Any) -> tuple[str, str, int]:
    shape = "×".join(f"{n:,}" for n in array.shape) or "scalar"
    summary = f"ndarray {shape} {array.dtype}"
    lines = [f"numpy array, shape {tuple(array.shape)}, dtype {array.dtype}"]
    if array.size and array.dtype.kind in "biufcmM":
        lines.append(_array_stats(array))
    if array.size:
        values = array.flat[:VALUES].tolist()
        more = ", …" if array.size > VALUES else ""
        lines.append(f"First values: {', '.join(_number(v) for v in values)}{more}")
    return summary, "\n".join(lines), 0


def _array_stats(array: Any) -> str:
    import numpy as np  # loaded: `array` is one of its arrays

    part, note = array, ""
    if array.ndim and array.size > STAT_VALUES:
        # A view of the leading rows: no copy of the whole array.
        rows = max(1, STAT_VALUES * array.shape[0] // array.size)
        part, note = array[:rows], f" (over the first {rows:,} of {array.shape[0]:,} rows)"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        kind = array.dtype.kind
        if kind == "c":
            return f"mean {_number(part.mean())}{note}"
        if kind in "mM":
            return f"min {part.min()}, max {part.max()}{note}"
        missing = np.isnan(part) if kind == "f" else None
        nans = int(missing.sum()) if missing is not None else 0
        if nans == part.size:
            return f"all {nans:,} values are NaN{note}"
        if nans:  # np.nanmean would copy the whole array
            mean = np.add.reduce(part, axis=None, where=~missing) / (part.size - nans)
        else:
            mean = part.mean()
        low, high = np.nanmin(part), np.nanmax(part)
        counted = f", {nans:,} NaN left out" if nans else ""
        return f"min {_number(low)}, max {_number(high)}, mean {_number(mean)}{counted}{note}"


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and not _is(value, "pandas", "Series")


def _container(value: Any) -> tuple[str, str, int]:
    size = len(value)
    kind = _type_name(value)
    summary = f"{kind} of {size:,}"
    noun = "item" if size == 1 else "items"
    lines = [f"{kind}, {size:,} {noun}"]
    if isinstance(value, (dict, Mapping)):
        items: Iterator[str] = (
            f"- {_short(k)}: {_short(v)}" for k, v in itertools.islice(value.items(), ITEMS)
        )
    elif isinstance(value, (list, tuple)):
        items = (f"- [{i}] {_short(v)}" for i, v in enumerate(itertools.islice(value, ITEMS)))
    else:
        items = (f"- {_short(v)}" for v in itertools.islice(value, ITEMS))
    lines.extend(items)
    if size > ITEMS:
        lines.append(f"- … {size - ITEMS:,} more items")
    return summary, "\n".join(lines), 0


def _partial_type() -> type:
    import functools

    return functools.partial


def _callable(value: Any) -> tuple[str, str, int]:
    kind = "class" if inspect.isclass(value) else "function"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or kind
    try:
        signature = str(inspect.signature(value))
    except (TypeError, ValueError):
        signature = "(…)"
    lines = [f"{kind} {name}{signature}"]
    doc = inspect.getdoc(value)
    if doc:
        lines += ["Docstring:", doc]
    try:
        source = inspect.getsource(value)
    except (OSError, TypeError):
        source = ""
    if source and len(source) <= SHORT_SOURCE:
        lines += ["Source:", "```python", source.rstrip("\n"), "```"]
    return kind, "\n".join(lines), 0


def _other(value: Any) -> tuple[str, str, int]:
    kind = _type_name(value)
    note = ""
    if inspect.isgenerator(value) or isinstance(value, Iterator):
        note = " (an iterator: described without consuming it)"
    try:
        text = repr(value)
    except Exception as exc:
        text = f"{object.__repr__(value)} (its repr() raised {_one_line(exc)})"
    return kind, f"{kind}{note}\n{text}", 0


# -- text pieces ----------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """reprlib without sorting whole dicts and sets, and with bytes cut before repr."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 120
        self.maxother = 200
        self.maxlong = 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 8

    def repr_dict(self, x: Any, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in itertools.islice(x.items(), self.maxdict)
        ]
        return "{" + ", ".join(pieces + (["..."] if len(x) > self.maxdict else [])) + "}"

    def repr_set(self, x: Any, level: int) -> str:
        if not x:
            return f"{type(x).__name__}()"
        if level <= 0:
            return "{...}"
        pieces = [self.repr1(v, level - 1) for v in itertools.islice(x, self.maxset)]
        return "{" + ", ".join(pieces + (["..."] if len(x) > self.maxset else [])) + "}"

    repr_frozenset = repr_set

    def repr_bytes(self, x: Any, level: int) -> str:
        text = repr(bytes(x[: self.maxstring]))
        return text + ("…" if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes


_SHORT = _ShortRepr()


def _short(value: Any) -> str:
    """A bounded repr of one item: safe for huge, recursive or broken values."""
    try:
        return _SHORT.repr(value)
    except Exception as exc:
        return f"<{_type_name(value)}: repr() raised {_one_line(exc)}>"


def _number(value: Any) -> str:
    """A number as a person writes it (numpy scalars without `np.float64(...)`)."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (list, tuple)):
        with contextlib.suppress(Exception):
            value = item()
    if isinstance(value, float):
        return format(value, ".8g")
    if hasattr(value, "isoformat"):  # dates and times, as people write them
        return str(value)
    return _short(value)


def _cell(value: Any) -> str:
    """One Markdown table cell: str() of the value, on one line, at most CELL characters."""
    try:
        if _is(value, "pandas", "Timestamp") and value == value.normalize():
            text = value.strftime("%Y-%m-%d")  # a date, as pandas shows a column of them
        else:
            text = value if isinstance(value, str) else str(value)
    except Exception as exc:
        text = f"<str() raised {type(exc).__name__}>"
    text = text[: CELL * 4].replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def _one_line(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        message = ""
    message = message.splitlines()[0] if message else ""
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__


def _cap(text: str, limit: int, hidden: int = 0) -> str:
    """`text` in at most about `limit` characters, with a marker saying what was left out;
    `hidden`: characters of the value already left out of `text`."""
    if len(text) <= limit and not hidden:
        return text
    kept = text[:limit]
    left = len(text) - len(kept) + hidden
    return f"{kept}\n[… {left:,} more characters left out]"
