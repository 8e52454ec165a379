"""What a batch runs over: its elements (list, Series values, DataFrame rows, any
iterable), and the names an element's prompt sees (`{item}`, `{index}`, the notebook's).

Imports nothing heavy (pandas only when the input comes from it), so that `--parallel`
can be checked while a cell's line is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_PARALLEL = 64


class BatchInputError(TypeError):
    """The items cannot be a batch (a str, a non-iterable...)."""


class Row:
    """A DataFrame row as the prompt sees it: `{item.column}` and `{item[column]}`."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[Any, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getitem__(self, key: Any) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}") from None

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def __str__(self) -> str:
        return ", ".join(f"{key}: {value}" for key, value in self._values.items())

    def __repr__(self) -> str:
        return f"Row({self._values!r})"


@dataclass
class Elements:
    """What a batch runs over: how many, and (index label, element) pairs on demand."""

    total: int
    pairs: Callable[[], Iterator[tuple[Any, Any]]]
    index: Any = None  # the pandas Index of a Series / DataFrame input, else None


def _pandas_kind(items: Any) -> str | None:
    # pandas is imported only when the input comes from it.
    if not type(items).__module__.startswith("pandas"):
        return None
    import pandas as pd

    if isinstance(items, pd.DataFrame):
        return "frame"
    if isinstance(items, pd.Series):
        return "series"
    return None


def elements(items: Any) -> Elements:
    """A list, tuple, range, pandas Series (values) or DataFrame (rows), or any iterable."""
    if isinstance(items, (str, bytes, bytearray)):
        raise BatchInputError(
            f"a {type(items).__name__} is one prompt, not a batch: put the elements in a list"
        )
    kind = _pandas_kind(items)
    if kind == "series":
        return Elements(len(items), lambda: iter(items.items()), items.index)
    if kind == "frame":
        columns = list(items.columns)

        def rows() -> Iterator[tuple[Any, Any]]:
            for label, *values in items.itertuples(index=True, name=None):
                yield label, Row(dict(zip(columns, values, strict=True)))

        return Elements(len(items), rows, items.index)
    if not isinstance(items, Iterable):
        raise BatchInputError(
            f"cannot run a batch over a {type(items).__name__}: it is not iterable"
            " (use a list, tuple, range, pandas Series or DataFrame)"
        )
    if getattr(items, "shape", None) == ():  # a 0-d numpy array is iterable, yet one value
        raise BatchInputError(
            f"cannot run a batch over a 0-d {type(items).__name__} (a single value):"
            " put the elements in a list, or use a 1-d array"
        )
    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        items = list(items)  # a generator: its length is known only once it is read
        total = len(items)
    return Elements(total, lambda: enumerate(items))


def check_parallel(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise ValueError(f"parallel must be a whole number from 1 to {MAX_PARALLEL}, not {value!r}")
    return value


class ElementScope(Mapping[str, Any]):
    """`item` and `index` over the notebook's names, without copying the namespace."""

    def __init__(self, own: dict[str, Any], rest: Mapping[str, Any]) -> None:
        self._own, self._rest = own, rest

    def __getitem__(self, key: str) -> Any:
        return self._own[key] if key in self._own else self._rest[key]

    def __contains__(self, key: object) -> bool:
        return key in self._own or key in self._rest

    def __iter__(self) -> Iterator[str]:
        yield from self._own
        yield from (k for k in self._rest if k not in self._own)

    def __len__(self) -> int:
        return len(set(self._own) | set(self._rest))
