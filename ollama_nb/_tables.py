"""Small tables for the line magic's answers: HTML with every cell escaped, and text."""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence

CELL_LIMIT = 80  # characters of a cell shown in the text form

# JupyterLab's stylesheet right-aligns table cells; a name or a sentence reads left-aligned.
# Short columns never wrap ("stand-in" must not break at its hyphen); long text may.
_LEFT = "text-align:left"
_RIGHT = "text-align:right"
_NOWRAP = ";white-space:nowrap"


class Table:
    """Rows of strings under column names.

    ``right``: columns of numbers, right-aligned (every other column is left-aligned).
    ``wrap``: columns of long text that may wrap in HTML (every other column does not).
    ``note``: a line shown under the table.
    """

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        empty: str,
        *,
        right: Collection[str] = (),
        wrap: Collection[str] = (),
        note: str = "",
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.empty = empty
        self.note = note
        self._right = [c in right for c in self.columns]
        self._styles = [
            (_RIGHT if c in right else _LEFT) + ("" if c in wrap else _NOWRAP) for c in self.columns
        ]

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(
            f'<th style="{s}">{html.escape(c)}</th>'
            for c, s in zip(self.columns, self._styles, strict=True)
        )
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="{s}">{html.escape(cell)}</td>'
                for cell, s in zip(row, self._styles, strict=True)
            )
            + "</tr>"
            for row in self.rows
        )
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"

    def __repr__(self) -> str:
        if not self.rows:
            return self.empty
        shown = [[_clip(c) for c in row] for row in self.rows]
        widths = [max(len(r[i]) for r in [self.columns, *shown]) for i in range(len(self.columns))]
        lines = [
            "  ".join(
                c.rjust(w) if right else c.ljust(w)
                for c, w, right in zip(row, widths, self._right, strict=True)
            ).rstrip()
            for row in [self.columns, *shown]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _clip(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= CELL_LIMIT else one_line[: CELL_LIMIT - 1] + "…"


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def human_duration(seconds: float) -> str:
    """A duration as a person says it: ``45 s``, ``4 min``, ``2 h 5 min``, ``3 days``."""
    if round(seconds) < 60:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days = round(seconds / 86400)
    return f"{days} day" if days == 1 else f"{days} days"
