"""Prompt variables (INTERFACE.md, "Prompt variables (revised in 0.2)"): identifier fields
are filled from the notebook; every other brace text is sent exactly as written."""

from __future__ import annotations

import pytest
from kernel_driver import KernelDriver
from support import run_cell

from ollama_nb._prompt import (
    PromptVariableError,
    fields,
    fill_parts,
    fill_prompt,
    template_parts,
)
from ollama_nb.testing import StandInServer

NS = {"country": "Peru", "d": {"k": 1, "two words": 2}, "xs": [1, 2, 3], "w": 6, "pi": 3.14159}

# What people paste: sent byte for byte.
VERBATIM = [
    "{'a': 1}",
    '{"k": 2}',
    '{"a": {"b": [1, {"c": null}]}}',
    "{}",
    "{3}",
    "x{2,3}",
    r"^\d{3}-\d{4}$",
    r"\frac{1}{2} and x^{10}",
    "int main(void) { if (x) { return 1; }}",
    'fn main() { println!("{}", 1); }',
    "{None} {True} {for}",
    "{ spaced } {-1} {a-b} {a b}",
    "}} alone, and }{",
    "{country!x}",
]


@pytest.mark.parametrize("text", VERBATIM)
def test_brace_text_that_is_no_field_is_sent_as_written(text: str) -> None:
    assert fill_prompt(text, NS) == text


@pytest.mark.parametrize(
    ("template", "sent"),
    [
        ("Capital of {country}?", "Capital of Peru?"),
        ("{country!r}", "'Peru'"),
        ("{pi:.2f}", "3.14"),
        ("{pi:>{w}.1f}", "   3.1"),
        ("{d[k]} {d[two words]} {xs[1]}", "1 2 2"),
        ("{country.lower.__name__}", "lower"),
        ("{{country}} is sent as {country}", "{country} is sent as Peru"),
        ("{{ and }}", "{ and }"),
        ('As JSON: {"name": "{country}"}', 'As JSON: {"name": "Peru"}'),
    ],
)
def test_identifier_fields_are_filled(template: str, sent: str) -> None:
    assert fill_prompt(template, NS) == sent


def test_a_template_split_once_fills_each_namespace_on_its_own() -> None:
    """A batch splits its template once (`template_parts`) and fills it per element."""
    parts = template_parts("Capital of {country!r:>{w}}? {{literal}} {d[k]} }} {'a': 1}")
    assert fill_parts(parts, {**NS, "w": 8}) == "Capital of   'Peru'? {literal} 1 }} {'a': 1}"
    chile = {**NS, "country": "Chile", "w": 0, "d": {"k": 2}}
    assert fill_parts(parts, chile) == "Capital of 'Chile'? {literal} 2 }} {'a': 1}"
    with pytest.raises(PromptVariableError, match="'country' is not defined"):
        fill_parts(parts, {"w": 1, "d": {}})


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("use {missing}", ["'missing' is not defined", "{{missing}}"]),
        ("{d[nope]}", ["cannot fill {d[nope]}", "KeyError", "{{d[nope]}}"]),
        ("{xs[9]}", ["cannot fill {xs[9]}", "IndexError"]),
        ("{country.nope}", ["AttributeError"]),
        ("{pi:q}", ["ValueError"]),
    ],
)
def test_a_field_that_cannot_be_filled_says_which_and_how_out(
    template: str, words: list[str]
) -> None:
    with pytest.raises(PromptVariableError) as info:
        fill_prompt(template, NS)
    message = str(info.value)
    assert all(word in message for word in words), message
    assert "\n" not in message and len(message) < 200


def test_fields_lists_the_variables_read() -> None:
    assert fields("a {x} {{y}} {z.q!r:>3} {3} {'k': 1}") == ["x", "z"]


def test_pasted_code_reaches_the_server_exactly(
    kernel: KernelDriver, server: StandInServer
) -> None:
    code = 'def f(x):\n    return {"k": x, 1: {2}}  # {3}, x{2,3}\n'
    kernel.ok(f"snippet = {code!r}")
    body = 'Review {snippet}\nAnswer as JSON: {"verdict": "ok"}, regex ^a{2}$, {{snippet}}'
    assert run_cell(kernel, "stand-in", body).status == "ok"
    received = server.wait_for_request("/api/generate").body["prompt"]
    assert received == (
        f'Review {code}\nAnswer as JSON: {{"verdict": "ok"}}, regex ^a{{2}}$, {{snippet}}'
    )
    assert kernel.value("_ollama.prompt") == received


def test_an_undefined_variable_is_one_line_and_nothing_is_sent(
    kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(kernel, "stand-in", "What is {undefined_thing_xyz}?")
    assert cell.ename == "UsageError"
    shown = cell.stream_text("stderr").strip()
    assert shown.startswith("UsageError: %%ollama: the prompt uses {undefined_thing_xyz}")
    assert "\n" not in shown and "{{undefined_thing_xyz}}" in shown and "--no-vars" in shown
    assert server.requests == []
