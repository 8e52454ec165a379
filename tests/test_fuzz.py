"""Fuzzing the `%%ollama` line: whatever is typed, a usage error or a valid request.

Two layers. Pure: thousands of random lines through `parse_line`, where only `UsageError`
may escape and what parses must be a request the client can send. In a kernel: a smaller
reproducible sample run as real cells against the stand-in, each ending quickly with a
one-line error at most, and the kernel answering afterwards.

The bugs this fuzzing found have their own regression tests at the end.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import shlex
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from IPython.core.error import UsageError
from kernel_driver import KernelDriver
from support import elapsed_of

from ollama_nb._magics import OllamaMagics
from ollama_nb._options import CellOptions, parse_line
from ollama_nb.testing import StandInServer

# Hypothesis keeps caches in ./.hypothesis: not in the checkout.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "ollama-nb-hypothesis"))

ONE_LINE_ERRORS = {
    "OllamaConnectionError",
    "OllamaTimeoutError",
    "OllamaModelNotFoundError",
    "OllamaResponseError",
}
KERNEL_BOUND = 8.0  # s per cell: read timeout 2 + connect 1, with room for a busy machine
SAFE = "--read-timeout 2 --connect-timeout 1 --retries 0"  # appended to in-kernel lines

# -- the lines ----------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-0", "0", "0.0", "1e-320", "0x10"]),
    st.sampled_from(["1_000", "", " ", "½", "٣", "2 3", "+5", "5s"]),
)
text = st.text(max_size=12)
odd_words = st.sampled_from(
    ["$x", "${x}", "$$", "$", "{x}", "{}", "{{}}", "{1+1}", "{", "}", "'", '"', "\\", "--", "-"]
)
word = st.one_of(text, odd_words, st.sampled_from(["stand-in", "qwen3:8b", "ünïcødé", "a b"]))
regex = st.lists(
    st.sampled_from(
        [
            *("(", ")", "[", "]", "a", "{", "}", "{2}", "{99999999999}", "*", "+", "?", "\\"),
            *("\\d", "(?P<x>", "(?", "|", ".", "^", "$", "part05", "{{3}}"),
        ]
    ),
    max_size=8,
).map("".join)
option_key = st.one_of(
    st.sampled_from(
        ["temperature", "num_predict", "seed", "stop", "top_k", "a.b", "standin_tokens"]
    ),
    st.sampled_from(["1bad", "", " ", "x y", "é", "a=b"]),
    text,
)
option_value = st.one_of(
    numbers,
    text,
    st.sampled_from(['["\\n"]', "{}", "[]", "null", "true", "NaN", "Infinity", "-Infinity"]),
    st.sampled_from(["1e999", "[NaN]", '{"a":', "'", "=", "1" * 400]),
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Hosts the in-kernel layer may contact: none needs DNS or a network. `$standin` (the
# stand-in's URL, a variable in the kernel) also exercises `$` expansion of the line.
KERNEL_HOSTS = [
    "$standin",
    f"127.0.0.1:{closed_port()}",
    "999.1.1.1",
    "xn--zz",
    "ftp://x",
    "http://[::1",
    "http://a:99999",
    "localhost:0",
]
FLAGS = ["--think", "--chat", "--background", "--nope", "-x", "--", "-h", "--time", "--rea"]


@st.composite
def arguments(draw: st.DrawFn, hosts: st.SearchStrategy[str]) -> list[str]:
    """One option as argv words: a flag with a value (sometimes odd), or a bare flag."""
    kind = draw(st.sampled_from(["number", "host", "text", "format", "o", "stop", "out", "flag"]))
    if kind == "number":
        flag = draw(
            st.sampled_from(["--connect-timeout", "--read-timeout", "--timeout", "--retries"])
        )
        return [flag, draw(numbers)]
    if kind == "host":
        return ["--host", draw(hosts)]
    if kind == "text":
        return ["--system", draw(word)]
    if kind == "format":
        return [
            "--format",
            draw(st.one_of(st.sampled_from(["json", "schema", "missing", "In"]), word)),
        ]
    if kind == "o":
        sep = draw(st.sampled_from(["=", "=", ":", ""]))
        return [
            draw(st.sampled_from(["-o", "--option"])),
            f"{draw(option_key)}{sep}{draw(option_value)}",
        ]
    if kind == "stop":
        return ["--stop-on", draw(regex)]
    if kind == "out":
        return [
            "--out",
            draw(st.one_of(st.sampled_from(["answer", "None", "1x", "_ollama"]), word)),
        ]
    return [draw(st.sampled_from(FLAGS))]


# How each word is typed: quoted, bare, in double quotes, or with a stray quote.
STYLES = ("quoted", "quoted", "quoted", "bare", "double", "unbalanced")
# In the kernel, mostly well-formed lines, so that many reach the server.
TIDY_STYLES = ("quoted",) * 9 + ("bare", "double", "unbalanced")


def render(word: str, style: str) -> str:
    if style == "quoted":
        return shlex.quote(word)
    if style == "double":
        return '"' + word.replace('"', '\\"') + '"'
    if style == "unbalanced":
        return "'" + word
    return word


@st.composite
def lines(
    draw: st.DrawFn,
    hosts: st.SearchStrategy[str],
    styles: tuple[str, ...] = STYLES,
    model: st.SearchStrategy[str | None] | None = None,
    max_options: int = 4,
) -> str:
    first = draw(st.one_of(st.none(), st.just("stand-in"), word) if model is None else model)
    words = [] if first is None else [first]
    for option in draw(st.lists(arguments(hosts), max_size=max_options)):
        words += option
    # One draw for all the styles: each draw costs, and thousands of lines are wanted.
    code = draw(st.integers(0, len(styles) ** len(words) - 1)) if words else 0
    typed = []
    for w in words:
        code, k = divmod(code, len(styles))
        typed.append(render(w, styles[k]))
    return " ".join(typed)


any_host = st.one_of(text, st.sampled_from(KERNEL_HOSTS), st.sampled_from(["", "a\x00b", "\u200b"]))

# -- what counts as a valid request ----------------------------------------------------


def sendable_host(host: str) -> bool:
    """Can the HTTP client build a request for this host, as it will for the request?"""
    try:
        httpx.Request("GET", f"{host}/api/version")
    except (httpx.InvalidURL, UnicodeError):
        return False
    return True


def check_valid(options: CellOptions) -> list[str]:
    """What is wrong with a parsed line (the empty list: nothing)."""
    problems = []
    for name in ("connect_timeout", "read_timeout", "timeout"):
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            problems.append(f"{name}={value!r}")
    if options.retries is not None and not 0 <= options.retries <= 20:
        problems.append(f"retries={options.retries!r}")
    if options.out is not None and (
        not options.out.isidentifier() or keyword.iskeyword(options.out)
    ):
        problems.append(f"out={options.out!r}")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", k) for k in options.options):
        problems.append(f"option keys {list(options.options)!r}")
    if options.host is not None and not (
        options.host.startswith(("http://", "https://")) and sendable_host(options.host)
    ):
        problems.append(f"host={options.host!r}")
    try:
        json.dumps(options.options, allow_nan=False)  # as the client will encode the body
    except ValueError:
        problems.append(f"options {options.options!r}")
    return problems


# -- layer 1: pure ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re on "[[", fine
@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(lines(any_host))
def test_parse_line_gives_a_usage_error_or_a_valid_request(line: str) -> None:
    try:
        options = parse_line(OllamaMagics.ollama_cell, line)
    except UsageError as exc:
        message = str(exc)
        assert message.startswith("%%ollama: ") and "Traceback" not in message
        event("usage error")
        return
    assert isinstance(options, CellOptions)
    assert check_valid(options) == [], line
    event("valid request")


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60))
def test_any_text_at_all(line: str) -> None:
    """Not even shaped like options: still a UsageError or a valid request."""
    try:
        options = parse_line(OllamaMagics.ollama_cell, line)
    except UsageError:
        return
    assert check_valid(options) == [], line


# -- layer 2: real cells ----------------------------------------------------------------


@pytest.fixture
def fuzz_kernel(kernel: KernelDriver, server: StandInServer) -> Iterator[KernelDriver]:
    kernel.ok(f"standin = {server.url!r}; x = 'ex'; schema = {{'type': 'object'}}")
    yield kernel
    kernel.ok("%ollama reset")  # --chat cells add to the notebook's conversation
    # --background cells return before their request ends: let those end here.
    assert all(record.wait_closed(10) for record in server.requests)


def check_cell_outcome(kernel: KernelDriver, line: str) -> str:
    cell = kernel.run(f"%%ollama {line} {SAFE}\nFuzz.", timeout=KERNEL_BOUND + 10)
    took = elapsed_of(cell)
    assert took <= KERNEL_BOUND, (line, took)
    if cell.status == "ok":
        return "ok"
    ename = cell.ename or ""
    shown = cell.error_text()
    if ename == "UsageError":
        assert shown.startswith("UsageError: ") and "Traceback" not in shown, shown
        return ename
    if ename in ONE_LINE_ERRORS:
        (only,) = cell.error()["traceback"]
        assert only.startswith(f"{ename}: ") and "\n" not in only, only
        return ename
    raise AssertionError(f"{ename} for {line!r}:\n{shown[-2000:]}")


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=lines(st.sampled_from(KERNEL_HOSTS), TIDY_STYLES, st.just("stand-in"), max_options=2))
def test_random_lines_in_a_real_kernel(fuzz_kernel: KernelDriver, line: str) -> None:
    event(check_cell_outcome(fuzz_kernel, line))
    assert fuzz_kernel.value("1+1") == 2  # the kernel is alive and idle


# -- regressions: bugs this fuzzing found ----------------------------------------------


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(" * 1000 + ")" * 1000])
def test_stop_on_regex_too_big_is_a_usage_error(pattern: str) -> None:
    with pytest.raises(UsageError, match="--stop-on"):
        parse_line(OllamaMagics.ollama_cell, f"stand-in --stop-on {shlex.quote(pattern)}")


def test_non_finite_option_value_is_not_a_traceback(kernel: KernelDriver) -> None:
    for value in ("NaN", "Infinity", "1e999"):
        cell = kernel.run(f"%%ollama stand-in -o temperature={value}\nHi.")
        assert cell.status == "ok" or cell.ename in {"UsageError"} | ONE_LINE_ERRORS, (
            value,
            cell.error_text()[-500:],
        )


@pytest.mark.parametrize("host", ["999.1.1.1", "xn--zz"])
def test_host_the_client_cannot_use_is_a_usage_error(kernel: KernelDriver, host: str) -> None:
    cell = kernel.run(f"%%ollama stand-in --host {host}\nHi.")
    assert cell.ename == "UsageError", cell.error_text()[-500:]


def test_out_refuses_a_keyword() -> None:
    with pytest.raises(UsageError, match="--out"):
        parse_line(OllamaMagics.ollama_cell, "stand-in --out for")
