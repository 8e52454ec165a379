"""Code blocks coloured as JupyterLab colours code: Pygments tokens with Pygments' short
class names (`k`, `s1`, `c1`, …), and a small stylesheet (`CODE_CSS`) that gives each the
front end's own editor colour (`--jp-mirror-editor-…`), with JupyterLab's light theme values
as fallbacks for GitHub and nbviewer (whose own Pygments stylesheet also knows the names).

Classes, not a style per token: inline styles made a code block ten times its text, and the
live view sends its open block again at each refresh. The record carries the stylesheet
once; the live view has it once per view (`_view`). The block itself (background, font) is
styled inline, so it reads even where a stylesheet is dropped. Pygments comes with IPython
(one of our dependencies); without it, code stays uncoloured.
"""

from __future__ import annotations

import functools
import html
from typing import Any

# The look of code blocks in JupyterLab's rendered Markdown (measured in Lab 4 / Notebook 7):
# the editor's background, code font, a little padding. Fallbacks: Lab's light theme.
PRE_STYLE = (
    "background: var(--jp-cell-editor-background, #f5f5f5);"
    " border: var(--jp-border-width, 1px) solid var(--jp-cell-editor-border-color, #e0e0e0);"
    " border-radius: 2px; padding: 6px 8px; margin: 0 0 1em 0; overflow-x: auto;"
    " font-family: var(--jp-code-font-family, monospace);"
    " font-size: inherit;"
    " line-height: var(--jp-code-line-height, 1.3077); white-space: pre"
)
# The code inside takes the block's look, not that of inline code (which has a background).
CODE_STYLE = "background: none; padding: 0; font-size: inherit; white-space: inherit"


def _color(name: str, fallback: str, extra: str = "") -> str:
    return f"color: var(--jp-mirror-editor-{name}-color, {fallback}){extra}"


# Pygments token type (by its dotted name, most specific first) -> JupyterLab's colour for it,
# as JupyterLab's CodeMirror highlight style gives them (keywords and operators bold,
# comments italic).
_STYLES: dict[str, str] = {
    "Keyword.Constant": _color("keyword", "#008000", "; font-weight: bold"),
    "Keyword": _color("keyword", "#008000", "; font-weight: bold"),
    "Name.Builtin.Pseudo": _color("variable-2", "#00366d"),
    "Name.Builtin": _color("builtin", "#008000"),
    "Name.Function": _color("def", "#0000ff"),
    "Name.Class": _color("def", "#0000ff"),
    "Name.Decorator": _color("meta", "#aa22ff"),
    "Name.Tag": _color("tag", "#117700"),
    "Name.Attribute": _color("attribute", "#0000cc"),
    "Name.Namespace": _color("variable", "#212121"),
    "Name.Exception": _color("builtin", "#008000"),
    "Literal.String.Doc": _color("string", "#ba2121"),
    "Literal.String.Escape": _color("string-2", "#770088"),
    "Literal.String.Interpol": _color("string-2", "#770088"),
    "Literal.String.Regex": _color("string-2", "#770088"),
    "Literal.String": _color("string", "#ba2121"),
    "Literal.Number": _color("number", "#008800"),
    "Operator.Word": _color("keyword", "#008000", "; font-weight: bold"),
    "Operator": _color("operator", "#7800c2", "; font-weight: bold"),
    "Comment.Preproc": _color("meta", "#aa22ff"),
    "Comment": _color("comment", "#408080", "; font-style: italic"),
    "Generic.Heading": _color("header", "#0000ff", "; font-weight: bold"),
    "Generic.Subheading": _color("header", "#0000ff", "; font-weight: bold"),
    "Generic.Deleted": _color("error", "#ff0000"),
    "Generic.Inserted": _color("quote", "#009900"),
    "Generic.Error": _color("error", "#ff0000"),
    "Error": "",  # Pygments marks what it cannot lex: shown as plain text, not red
}


CODE_CLASS = "ollama-nb-code"


def _class_name(dotted: str) -> str:
    from pygments.token import STANDARD_TYPES, string_to_tokentype

    return STANDARD_TYPES[string_to_tokentype(dotted)]


def _stylesheet() -> str:
    try:
        rules = [f".{CODE_CLASS} .{_class_name(n)} {{{s}}}" for n, s in _STYLES.items() if s]
    except ImportError:
        return ""
    return "".join(rules)


CODE_CSS = _stylesheet()


@functools.lru_cache(maxsize=256)
def _class_of(token_type: Any) -> str:
    """The class of a Pygments token type: that of its nearest styled type, or ""."""
    while token_type is not None:
        name = ".".join(token_type)
        if name in _STYLES:
            return _class_name(name) if _STYLES[name] else ""
        token_type = token_type.parent
    return ""


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    """The Pygments lexer for a fence's language name, or None (unknown, or no Pygments).
    Cached, misses too: a lookup by an unknown name scans Pygments' plugins."""
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except (ClassNotFound, ValueError):
        return None


def highlight(code: str, language: str, _attrs: str = "") -> str:
    """A fenced code block as `<pre><code>` HTML, coloured when its language is known
    (markdown-it's `highlight` hook: the HTML is used as it is)."""
    name = language.split()[0].lower() if language.strip() else ""
    lexer = _lexer(name) if name else None
    css = f' class="language-{html.escape(name)}"' if name else ""
    if lexer is None:
        body = html.escape(code)
    else:
        # The live view renders the block still streaming at each refresh: its complete
        # lines are coloured once per new line (cached), the line being written is plain.
        lines, partial = _split_last_line(code)
        body = _coloured(lexer, lines) + html.escape(partial, quote=False)
    return (
        f'<pre class="{CODE_CLASS}" style="{PRE_STYLE}">'
        f'<code{css} style="{CODE_STYLE}">{body}</code></pre>'
    )


CACHED_CHARS = 8 * 1024  # longer code (a record's) is coloured once anyway: not kept


def _split_last_line(code: str) -> tuple[str, str]:
    cut = code.rfind("\n") + 1
    return code[:cut], code[cut:]


def _coloured(lexer: Any, code: str) -> str:
    if len(code) > CACHED_CHARS:
        return "".join(_spans(lexer, code))
    return _coloured_cached(lexer, code)


@functools.lru_cache(maxsize=8)
def _coloured_cached(lexer: Any, code: str) -> str:
    return "".join(_spans(lexer, code))


def _spans(lexer: Any, code: str) -> list[str]:
    """Escaped text, with tokens of the same class run together into one span."""
    out: list[str] = []
    style, text = "", ""
    for token_type, value in lexer.get_tokens(code):
        token_style = _class_of(token_type) if value.strip() else style
        if token_style != style:
            out.append(_span(style, text))
            style, text = token_style, ""
        text += value
    out.append(_span(style, text))
    return out


def _span(css_class: str, text: str) -> str:
    if not text:
        return ""
    escaped = html.escape(text, quote=False)
    return f'<span class="{css_class}">{escaped}</span>' if css_class else escaped
