"""Make `%%ollama` cells (and one-line `%ollama` cells) async cells.

A cell magic cannot be a coroutine, so this input transformer rewrites a `%%ollama`
cell into one awaited call before IPython compiles it. The kernel then runs the cell
as an async cell: its loop stays free while the answer streams, and a Stop click (a
comm message) is handled while the cell is still running.

Nothing is rewritten outside a kernel (terminal IPython) or with `%autoawait off`;
IPython then runs the cell magic itself, which has its own synchronous path.

Only the cell the kernel was asked to run is rewritten. Code that runs a `%%ollama`
cell of its own from inside a running cell — `%%time` and `%%prun` compile their body
with `transform_cell`, `%%capture` runs it with `run_cell` — cannot await: there the
cell magic's synchronous path runs instead (the rewritten `await` would be a
SyntaxError, or "this event loop is already running" with nothing sent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CELL_MAGIC = "%%ollama"
LINE_MAGIC = "%ollama"
MODULE = '__import__("ollama_nb._magics", fromlist=["_"])'


def make_transformer(shell: Any) -> Callable[[list[str]], list[str]]:
    def ollama_async_cell(lines: list[str]) -> list[str]:
        kernel = getattr(shell, "kernel", None)
        if not getattr(shell, "autoawait", False) or kernel is None:
            return lines
        if not _is_the_requested_cell(kernel, lines):
            return lines
        first = next((i for i, text in enumerate(lines) if text.strip()), None)
        if first is None:
            return lines
        head = lines[first].rstrip("\n")
        if _starts_with_word(head, CELL_MAGIC):
            line = head[len(CELL_MAGIC) :].strip()
            body = "".join(lines[first + 1 :])
            return [f"await {MODULE}.run_cell_async({line!r}, {body!r})\n"]
        rest = [text for text in lines[first + 1 :] if text.strip()]
        if _starts_with_word(head, LINE_MAGIC) and not rest:
            # Alone in its cell, so that `%ollama pull`'s Stop can reach the running cell.
            line = head[len(LINE_MAGIC) :].strip()
            return [f"await {MODULE}.run_line_async({line!r})\n"]
        return lines

    return ollama_async_cell


def _starts_with_word(text: str, word: str) -> bool:
    return text.startswith(word) and (len(text) == len(word) or text[len(word)].isspace())


def _is_the_requested_cell(kernel: Any, lines: list[str]) -> bool:
    """Whether `lines` are the code of the execute request the kernel is handling (and
    not a body that a cell magic or `run_cell` transforms while that cell runs)."""
    try:
        parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else {}
    except Exception:
        return True  # cannot tell: treat it as the requested cell, as before
    code = ((parent or {}).get("content") or {}).get("code")
    if not isinstance(code, str):
        return not parent  # no request at all (e.g. a test calling transform_cell)
    return "".join(lines).strip() == code.strip()
