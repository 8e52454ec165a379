"""The pure pieces: host parsing, option parsing, NDJSON framing, safe rendering."""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError

from ollama_nb import OllamaResponseError, OllamaResult
from ollama_nb._config import parse_host
from ollama_nb._magics import OllamaMagics
from ollama_nb._ndjson import LineDecoder, parse_line
from ollama_nb._options import parse_line as parse_magic_line
from ollama_nb._render import record_html


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("example.com", "http://example.com:11434"),
        ("example.com:8080", "http://example.com:8080"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:9000/ollama/", "https://example.com:9000/ollama"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("[::1]:1234", "http://[::1]:1234"),
    ],
)
def test_host_is_parsed_like_the_official_client(given: str | None, expected: str) -> None:
    assert parse_host(given) == expected


@pytest.mark.parametrize("bad", ["ftp://example.com", "example.com:notaport"])
def test_bad_host_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_host(bad)


def parse(line: str):
    return parse_magic_line(OllamaMagics.ollama_cell, line)


def test_full_line_is_parsed() -> None:
    opts = parse(
        "llama3.2 --host h:1 --connect-timeout 1.5 --read-timeout 9 --timeout 30 --retries 0"
        " --system 'be brief' -o temperature=0 -o stop='[\"\\n\"]' -o mode=fast --out r"
    )
    assert opts.model == "llama3.2"
    assert opts.host == "http://h:1"
    assert (opts.connect_timeout, opts.read_timeout, opts.timeout) == (1.5, 9.0, 30.0)
    assert opts.retries == 0
    assert opts.system == "be brief"
    assert opts.options == {"temperature": 0, "stop": ["\n"], "mode": "fast"}
    assert opts.out == "r"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("m --timeout -1", "--timeout must be a positive"),
        ("m --timeout abc", "invalid float value"),
        ("m --read-timeout 0", "--read-timeout must be a positive"),
        ("m --connect-timeout nan", "--connect-timeout must be a positive"),
        ("m --retries -1", "retries must be a whole number"),
        ("m --retries 2.5", "invalid int value"),
        ("m --bogus", "unrecognized arguments: --bogus"),
        ("m --system 'unbalanced", "No closing quotation"),
        ("m -o novalue", "-o takes KEY=VALUE"),
        ("m --out 1x", "--out needs a Python variable name"),
        ("m --stop-on '('", "not a valid regular expression"),
        ("m --stop-on '[[:alpha:]]+'", "[:alpha:] is a POSIX class"),
        ("m --stop-on '[^[:space:]]'", "for [[:space:]] write \\s"),
        ("m --host ftp://x", "unsupported scheme"),
        ("m extra words", "unrecognized arguments"),
    ],
)
def test_bad_lines_are_short_usage_errors(line: str, words: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(line)
    assert words in str(info.value)
    assert len(str(info.value)) < 200


def test_a_cells_unfillable_field_names_the_cells_ways_out() -> None:
    """The cell's own switch (--no-vars) is named by the cell's path only: `_prompt`'s
    words serve the Python API and --each too, where it does not apply."""
    from ollama_nb._exceptions import InvalidRequest
    from ollama_nb._prompt import fill_prompt
    from ollama_nb._request import fill_variables

    assert fill_variables("Hi {name}, {{name}} {n:03d}", {"name": "Ada", "n": 7}) == (
        "Hi Ada, {name} 007"
    )
    with pytest.raises(InvalidRequest, match="'missing' is not defined") as info:
        fill_variables("use {missing}", {})
    assert "{{missing}}" in str(info.value) and "or use --no-vars" in str(info.value)
    assert str(info.value).endswith("; nothing was sent")
    with pytest.raises(ValueError) as bare:
        fill_prompt("use {missing}", {})
    assert "--no-vars" not in str(bare.value)


def test_line_decoder_reassembles_split_lines_and_utf8() -> None:
    data = '{"response":"héllo 🌍"}\n{"done":true}\n'.encode()
    decoder = LineDecoder()
    lines: list[bytes] = []
    for i in range(len(data)):  # one byte per read: every split point, mid-character too
        lines += decoder.feed(data[i : i + 1])
    assert [parse_line(line) for line in lines] == [{"response": "héllo 🌍"}, {"done": True}]
    assert decoder.tail() == b""


def test_line_decoder_keeps_a_last_line_without_newline_and_bounds_lines() -> None:
    decoder = LineDecoder(max_line_bytes=10)
    assert decoder.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert decoder.tail() == b'{"b"'
    with pytest.raises(OllamaResponseError, match="longer than"):
        LineDecoder(max_line_bytes=10).feed(b"x" * 11)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"not json", "not NDJSON"),
        (b"[1,2]", "not an object"),
        (b'{"error":"boom"}', "error mid-stream: boom"),
        (b"\xff\xfe", "not NDJSON"),
    ],
)
def test_bad_lines_raise_response_errors(line: bytes, words: str) -> None:
    with pytest.raises(OllamaResponseError, match=words) as info:
        parse_line(line)
    assert info.value.status_code == -1


def test_record_shows_html_as_text_and_keeps_code_readable() -> None:
    text = 'Hi <img src=x onerror="alert(1)"> <script>x()</script>\n\n```html\n<b>bold</b>\n```\n'
    html = record_html(OllamaResult(model="<m>", text=text, done_reason="stop"))
    assert "<img" not in html and "<script" not in html and "<b>bold" not in html
    # An <img> is a link with its alt text (never fetched), its other attributes dropped.
    assert '<a class="ollama-nb-image" href="x"' in html and "onerror" not in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html
    coloured = r'<pre[^>]*><code class="language-html"[^>]*>&lt;b&gt;bold&lt;/b&gt;\n</code></pre>'
    assert re.search(coloured, re.sub(r"</?span[^>]*>", "", html))  # without the colours
    assert "&lt;m&gt; · stop" in html


def test_javascript_links_are_not_links() -> None:
    html = record_html(OllamaResult(model="m", text="[x](javascript:alert(1))"))
    assert "href" not in html


def test_plain_record_of_a_huge_answer_shows_its_head() -> None:
    from ollama_nb._render import record_text

    short = OllamaResult(model="m", text="short answer", done_reason="stop")
    assert record_text(short).startswith("short answer\n\nm · stop")
    huge = OllamaResult(model="m", text="x" * 100_000, done_reason="stop")
    plain = record_text(huge)
    assert len(plain) < 5_000 and "95,904 more characters" in plain
    assert plain.endswith(huge.status) and "x" * 100_000 in record_html(huge)
