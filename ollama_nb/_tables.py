"""Small tables for the line magic's answers: HTML with every cell escaped, and text."""

from __future__ import annotations

import html
from collections.abc import Sequence

CELL_LIMIT = 80  # characters of a cell shown in the text form


class Table:
    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.empty = empty

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        if not self.rows:
            return self.empty
        shown = [[_clip(c) for c in row] for row in self.rows]
        widths = [max(len(r[i]) for r in [self.columns, *shown]) for i in range(len(self.columns))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [self.columns, *shown]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
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
