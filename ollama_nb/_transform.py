"""Make `%%ollama` cells async cells.

A cell magic cannot be a coroutine, so this input transformer rewrites a `%%ollama`
cell into one awaited call before IPython compiles it. The kernel then runs the cell
as an async cell: its loop stays free while the answer streams, and a Stop click (a
comm message) is handled while the cell is still running.

Nothing is rewritten outside a kernel (terminal IPython) or with `%autoawait off`;
IPython then runs the cell magic itself, which has its own synchronous path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAGIC = "%%ollama"
CALL = '__import__("ollama_nb._magics", fromlist=["_"]).run_cell_async'


def make_transformer(shell: Any) -> Callable[[list[str]], list[str]]:
    def ollama_async_cell(lines: list[str]) -> list[str]:
        if not getattr(shell, "autoawait", False) or getattr(shell, "kernel", None) is None:
            return lines
        first = next((i for i, text in enumerate(lines) if text.strip()), None)
        if first is None:
            return lines
        head = lines[first].rstrip("\n")
        if not head.startswith(MAGIC) or (
            len(head) > len(MAGIC) and not head[len(MAGIC)].isspace()
        ):
            return lines
        line = head[len(MAGIC) :].strip()
        body = "".join(lines[first + 1 :])
        return [f"await {CALL}({line!r}, {body!r})\n"]

    return ollama_async_cell
