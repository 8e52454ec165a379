"""`--code`: the instruction that asks for Python code, the code found in an answer, and
the record's line saying where it went. Pure functions of plain values.

Which code: the first fenced block whose info string is `python`, `py`, `python3`,
`ipython` or empty (in CommonMark's terms, so a block inside a list item or a quote is
found too, de-indented, and a ``` line inside a longer ```` fence is code); an answer
with no fence at all is code as a whole. A fence left open at the end (the answer cut by
`num_predict`, or the model never closed it) runs to the end of the answer, as CommonMark
reads it: its content is still the code, so an answer cut by `length` gives what it has.
"""

from __future__ import annotations

import functools

from markdown_it import MarkdownIt
from markdown_it.token import Token

CODE_INSTRUCTION = (
    "Answer with Python code for one Jupyter notebook cell, in a single ```python fenced"
    " block. Keep any explanation short and outside the block."
)
PYTHON_INFO = frozenset({"python", "py", "python3", "ipython", ""})
# The answer ended as a finished answer: only then does its code go into a cell.
FINISHED = frozenset({"stop", "length"})
_WHY_NOT = {
    "stopped": "the answer was stopped",
    "interrupted": "the request was interrupted",
    "timeout": "the request timed out",
    "error": "the request failed",
}


def with_code_instruction(system: str | None) -> str:
    """The system prompt with the instruction after it (a given system prompt is kept)."""
    return f"{system}\n\n{CODE_INSTRUCTION}" if system else CODE_INSTRUCTION


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Each fenced code block of `text` in order: (first word of its info string, lower
    case; its content). A fence left open runs to the end of `text`."""
    md = _markdown()
    tokens: list[Token] = []
    md.block.parse(text, md, {}, tokens)
    blocks = []
    for token in tokens:
        if token.type == "fence":
            words = token.info.split(maxsplit=1)
            blocks.append((words[0].lower() if words else "", token.content))
    return blocks


def extract_code(text: str) -> str | None:
    """The answer's Python code (see the module's docstring), or None when it has none:
    an empty answer, or fences none of which holds Python."""
    blocks = fenced_blocks(text)
    if not blocks:
        code = text.strip("\n")
        return code if code.strip() else None
    for info, content in blocks:
        if info in PYTHON_INFO:
            code = content.strip("\n")
            return code if code.strip() else None
    return None


def line_count(code: str) -> int:
    return code.count("\n") + 1


def finished(done_reason: str | None, failed: bool) -> bool:
    """Whether an answer ended as a finished one (`stop`, `length`; a server that sent
    no reason with its final chunk finished too)."""
    return not failed and (done_reason in FINISHED or done_reason is None)


def code_note(code: str | None, done_reason: str | None, failed: bool, inserted: str | None) -> str:
    """The record's line: where the code went (`inserted` says where it was put, None
    when it was not), or why nothing was inserted."""
    if not finished(done_reason, failed):
        why = _WHY_NOT.get(done_reason or "", "the request failed")
        kept = f" ({_lines(code)} in .code)" if code is not None else ""
        return f"code: nothing inserted: {why}{kept}"
    if code is None:
        return "code: nothing inserted: the answer has no Python code block"
    if inserted is None:
        return f"code: {_lines(code)} in .code (no cell to put it in)"
    return f"code: {_lines(code)} put {inserted}"


def _lines(code: str) -> str:
    count = line_count(code)
    return f"{count} line{'' if count == 1 else 's'}"
