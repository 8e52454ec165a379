"""The static record: an answer as safe HTML, and the one-line status. Pure functions.

JupyterLab renders the running session's HTML and Markdown outputs without sanitising
them, so model output must never reach the page as markup. The answer is rendered from
Markdown with raw HTML disabled: `<script>` in prose shows as text, while code blocks
keep their `<` readable (a naive `&lt;` pass would show entities inside code).
"""

from __future__ import annotations

import base64
import functools
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt

if TYPE_CHECKING:
    from ._result import OllamaResult

PLAIN_LIMIT = 64 * 1024  # a record's text/plain copy beyond this shows its head only
PLAIN_HEAD = 4 * 1024
STATUS_STYLE = "color: var(--jp-ui-font-color2, #666); font-size: 0.85em; margin-top: 0.4em"


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # "html": False turns raw HTML into text; markdown-it also refuses javascript: links.
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def markdown_html(text: str) -> str:
    return _markdown().render(text)


def format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def status_line(result: OllamaResult) -> str:
    reason = result.done_reason or "running"
    if result.timeout_kind:
        reason = f"{reason} ({result.timeout_kind})"
    tokens = result.eval_count if result.eval_count is not None else result.chunks
    parts = [result.model, reason, f"{tokens} token{'' if tokens == 1 else 's'}"]
    if result.tokens_per_second is not None:
        parts.append(f"{result.tokens_per_second:.1f} tokens/s")
    parts.append(format_seconds(result.elapsed))
    return " · ".join(parts)


def record_html(result: OllamaResult) -> str:
    pieces = ['<div class="ollama-nb-record">']
    if result.images:
        pieces.append(thumbnails_html(result.images))
    if result.thinking:
        pieces.append(
            "<details><summary>Thinking</summary>"
            f'<div class="ollama-nb-thinking">{markdown_html(result.thinking)}</div></details>'
        )
    pieces.append(f'<div class="ollama-nb-answer">{markdown_html(result.text)}</div>')
    pieces.append(
        f'<div class="ollama-nb-status" style="{STATUS_STYLE}">{html.escape(result.status)}</div>'
    )
    pieces.append("</div>")
    return "".join(pieces)


def thumbnails_html(images: Sequence[bytes]) -> str:
    """The images sent, as static thumbnails (≤ 160 px high) that saved notebooks keep."""
    tags = "".join(
        f'<img src="data:{_image_mime(data)};base64,{base64.b64encode(data).decode()}"'
        ' alt="image sent" style="max-height: 160px; margin: 0 4px 4px 0">'
        for data in images
        if data
    )
    return f'<div class="ollama-nb-images">{tags}</div>'


def _image_mime(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF":
        return "image/webp"
    return "image/png"


def record_text(result: OllamaResult) -> str:
    """The plain-text side of the record (consoles, nbval). A huge answer shows its head:
    the HTML side has it all, and a second full copy would double the notebook's size."""
    parts = []
    if result.images:
        parts.append(f"[{len(result.images)} image{'' if len(result.images) == 1 else 's'} sent]")
    if result.thinking:
        parts.append(f"[thinking]\n{_head(result.thinking)}\n[/thinking]")
    if result.text:
        parts.append(_head(result.text))
    parts.append(result.status)
    return "\n\n".join(parts)


def _head(text: str) -> str:
    if len(text) <= PLAIN_LIMIT:
        return text
    rest = len(text) - PLAIN_HEAD
    return f"{text[:PLAIN_HEAD]}… [{rest:,} more characters: print(_ollama) shows them all]"
