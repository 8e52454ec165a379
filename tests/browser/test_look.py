"""The look, measured in a real JupyterLab 4 and Notebook 7 (issue 23, points 1-6).

Each test drives one notebook against the stand-in, keeps a screenshot of each state under
artifacts/ (`look-<front end>-<state>.png`) and reads positions, sizes and computed styles
from the DOM: nothing moves when an answer ends, Stop is compact and keeps its place while
the counters grow, thinking looks the same live and final, code and tables look like
Jupyter's own Markdown, outcomes are visible, and the record lines up with other outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nbformat
import pytest
from browser_helpers import cell, cell_output_text, poll, run_cell, screenshot, wait_cell_finished
from playwright.sync_api import Page

from ollama_nb.testing import StandInServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("front_end", ["lab", "notebook"])]

LOAD = "%load_ext ollama_nb"
RECORD = ".ollama-nb-record"
STATUS = ".ollama-nb-status"
ANSWER_LIVE = ".ollama-nb-live-answer"
ANSWER = ".ollama-nb-answer"
STOP = ".jp-OutputArea-output button.jupyter-button"
HEADER = ".ollama-nb-header"

REPLY = (
    "Here is a function:\n\n"
    "```python\ndef area(r: float) -> float:\n    # a circle\n    return 3.14 * r ** 2\n```\n\n"
    "| name | value |\n|------|------:|\n| pi | 3.14 |\n| e | 2.72 |\n\n"
    "Euler: $e^{i\\pi} + 1 = 0$, and it costs $5 and $10.\n\n" + "More words follow here. " * 30
)

# The box of the first element matching `selector` inside cell `index`, or null.
BOX_JS = """([index, selector]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const el = node && node.querySelector(selector);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, width: r.width, height: r.height, right: r.right};
}"""

# Computed styles of the first element matching `selector` in cell `index` (pseudo: '::before').
STYLE_JS = """([index, selector, props, pseudo]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const el = node && node.querySelector(selector);
    if (!el) return null;
    const style = getComputedStyle(el, pseudo || null);
    return Object.fromEntries(props.map((p) => [p, style.getPropertyValue(p)]));
}"""


def box(page: Page, index: int, selector: str) -> dict[str, float] | None:
    return page.evaluate(BOX_JS, [index, selector])


def style(
    page: Page, index: int, selector: str, props: list[str], pseudo: str = ""
) -> dict[str, str] | None:
    return page.evaluate(STYLE_JS, [index, selector, props, pseudo])


def align(value: str) -> str:
    """A computed text-align as it shows (`align="right"` computes to `-webkit-right`)."""
    return {"start": "left", "-webkit-right": "right", "-webkit-left": "left"}.get(value, value)


def open_with(
    open_notebook: Callable[..., Page], front_end: str, server: StandInServer, cells: list[Any]
) -> Page:
    page = open_notebook(front_end, None, cells, env={"OLLAMA_HOST": server.url})
    run_cell(page, cells[0], 0)
    wait_cell_finished(page, 0, timeout=30)
    return page


def shot(page: Page, front_end: str, state: str) -> None:
    screenshot(page, f"look-{front_end}-{state}")


# Each code token of the first code block in cell `index` under `scope`: text, colour, weight,
# style (JupyterLab colours a Markdown cell's code itself; ours comes from Pygments).
TOKENS_JS = """([index, scope]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const pre = node.querySelector(scope + ' pre');
    if (!pre) return null;
    const out = {};
    for (const s of pre.querySelectorAll('span')) {
        const c = getComputedStyle(s);
        out[s.textContent.trim()] = [c.color, c.fontWeight, c.fontStyle];
    }
    return out;
}"""
CODE_TOKENS = ["def", "area", "# a circle", "return", "3.14"]
PRE_LOOK = ["font-family", "font-size", "line-height"]


def test_single_answer_streams_and_ends_in_place(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """Points 1, 2, 4 and the record's left edge (5): a streaming answer with code, a table,
    maths and money; a Markdown cell with the same text; a Markdown output."""
    server.configure(reply=REPLY, token_interval=0.04)
    magic = "%%ollama stand-in\nExplain."
    markdown = nbformat.v4.new_markdown_cell(REPLY)
    first = f"{LOAD}\nfrom IPython.display import Markdown\ndisplay(Markdown('Jupyter *Markdown*'))"
    page = open_with(open_notebook, front_end, server, [first, magic, markdown])
    run_cell(page, magic, 1)
    stop = cell(page, 1).locator(STOP)
    stop.wait_for(state="visible", timeout=20_000)
    assert stop.inner_text().strip() == "Stop"
    first_line = poll("the first line", lambda: box(page, 1, ANSWER_LIVE + " p"), 20, page)

    # Stop: compact, outlined, and in one place while the counters grow.
    places = set()
    counters = set()

    def counters_grew() -> bool:
        places.add(round(box(page, 1, STOP)["x"]))  # type: ignore[index]
        counters.add(cell(page, 1).locator(".ollama-nb-count").inner_text())
        return len(counters) >= 4

    poll("the token counter to change", counters_grew, 20, page)
    assert len(places) == 1, (places, counters)
    stop_box = box(page, 1, STOP)
    assert stop_box is not None and stop_box["width"] <= 80 and stop_box["height"] <= 26, stop_box
    look = style(page, 1, STOP, ["background-color", "border-top-width", "color"])
    assert look is not None and look["background-color"] in ("rgba(0, 0, 0, 0)", "transparent")
    assert look["border-top-width"] == "1px", look
    stop.hover()
    hovered = style(page, 1, STOP, ["color", "border-top-color"])
    assert hovered is not None and hovered["color"] == hovered["border-top-color"] != look["color"]
    page.mouse.move(0, 0)
    model = box(page, 1, HEADER + " .widget-html")
    separators = [
        style(page, 1, f"{HEADER} > {label}", ["content"], "::before")
        for label in (".ollama-nb-elapsed", ".ollama-nb-count")
    ]
    assert separators == [{"content": '"·"'}] * 2, separators

    # Code and table in the live view: a finished block once the table streams.
    poll("the table to stream", lambda: box(page, 1, ANSWER_LIVE + " table"), 30, page)
    live_tokens = page.evaluate(TOKENS_JS, [1, ANSWER_LIVE])
    live_table = box(page, 1, ANSWER_LIVE + " table")
    shot(page, front_end, "1-streaming")
    header = box(page, 1, HEADER)
    live_line = box(page, 1, ANSWER_LIVE + " p")

    wait_cell_finished(page, 1, timeout=60)
    status = poll("the record", lambda: box(page, 1, STATUS), 10, page)
    shot(page, front_end, "2-finished")
    status_text = cell(page, 1).locator(STATUS).inner_text()
    assert status_text.startswith("stand-in · stop · "), status_text

    # 1. Nothing jumps: the status line takes the header's place, the answer stays put.
    assert header is not None and live_line is not None
    assert abs(status["y"] - header["y"]) <= 2 and abs(status["height"] - header["height"]) <= 2
    line = box(page, 1, ANSWER + " p")
    assert line is not None
    assert abs(line["y"] - live_line["y"]) <= 2, (live_line, line)
    assert abs(line["x"] - live_line["x"]) <= 1, (live_line, line)
    assert abs(line["y"] - first_line["y"]) <= 2, (first_line, line)  # in the open block
    model_final = page.evaluate(
        """() => {
        const status = document.querySelectorAll('.jp-Notebook .jp-Cell')[1]
            .querySelector('.ollama-nb-status');
        const range = document.createRange();
        range.setStart(status.firstChild, 0);
        range.setEnd(status.firstChild, 'stand-in'.length);
        const r = range.getBoundingClientRect();
        return {x: r.x, width: r.width};
    }"""
    )
    assert model is not None and abs(model["x"] - model_final["x"]) <= 2, (model, model_final)

    # 4. Code as in Jupyter's own Markdown: the same colours, weights, styles, code font.
    markdown_tokens = page.evaluate(TOKENS_JS, [2, ".jp-RenderedMarkdown"])
    record_tokens = page.evaluate(TOKENS_JS, [1, ANSWER])
    for token in CODE_TOKENS:
        assert record_tokens[token] == markdown_tokens[token], (token, record_tokens)
        assert live_tokens[token] == markdown_tokens[token], (token, live_tokens)
    record_pre = style(page, 1, ANSWER + " pre", [*PRE_LOOK, "background-color"])
    markdown_pre = style(page, 2, ".jp-RenderedMarkdown pre", PRE_LOOK)
    assert record_pre is not None and markdown_pre is not None
    assert {k: record_pre[k] for k in PRE_LOOK} == markdown_pre, (record_pre, markdown_pre)
    editor = page.evaluate(
        "() => { const d = document.createElement('div');"
        " d.style.background = 'var(--jp-cell-editor-background)';"
        " document.body.appendChild(d); const c = getComputedStyle(d).backgroundColor;"
        " d.remove(); return c; }"
    )
    assert record_pre["background-color"] == editor, (record_pre, editor)
    # Tables: cells aligned as the Markdown cell aligns them.
    for column in (1, 2):
        selector = f"tbody tr td:nth-child({column})"
        ours = style(page, 1, f"{ANSWER} {selector}", ["text-align"])
        theirs = style(page, 2, f".jp-RenderedMarkdown {selector}", ["text-align"])
        assert ours is not None and theirs is not None
        assert align(ours["text-align"]) == align(theirs["text-align"]), (column, ours, theirs)

    table = box(page, 1, ANSWER + " table")
    assert table is not None and live_table is not None
    assert abs(table["x"] - live_table["x"]) <= 1 and abs(table["x"] - line["x"]) <= 1, table

    # 5. The record's left edge is that of a Markdown output (IPython.display.Markdown).
    markdown_output = box(page, 0, ".jp-RenderedMarkdown p")
    assert markdown_output is not None and abs(line["x"] - markdown_output["x"]) <= 1
    # Maths typeset, money as written.
    assert cell(page, 1).locator(ANSWER + " mjx-container").count() >= 1
    assert "costs $5 and $10." in cell_output_text(page, 1)


THINKING = ".ollama-nb-thinking-box"
# The thinking box's title line: the Accordion's header live, the <details>' summary after.
THINKING_TITLE = (
    f"{THINKING} .jupyter-widget-Collapse-header, {THINKING} .p-Collapse-header,"
    f" {THINKING} > summary"
)
TITLE_LOOK = ["font-size", "font-weight", "color", "background-color", "border-top-width"]


def test_thinking_looks_the_same_live_and_final(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """Point 3: the collapsed thinking line, live (Accordion) and final (<details>)."""
    server.configure(
        thinking="Let me see: " + "a thought, " * 40, reply="The answer. " * 60, token_interval=0.04
    )
    magic = "%%ollama stand-in-think --think\nIs 391 prime?"
    page = open_with(open_notebook, front_end, server, [LOAD, magic])
    run_cell(page, magic, 1)
    poll("the answer to stream", lambda: box(page, 1, ANSWER_LIVE + " p"), 30, page)
    live = box(page, 1, THINKING_TITLE)
    live_look = style(page, 1, THINKING_TITLE, TITLE_LOOK)
    live_line = box(page, 1, ANSWER_LIVE + " p")
    shot(page, front_end, "3-thinking-live")
    wait_cell_finished(page, 1, timeout=60)
    poll("the record", lambda: box(page, 1, STATUS), 10, page)
    final = box(page, 1, THINKING_TITLE)
    final_look = style(page, 1, THINKING_TITLE, TITLE_LOOK)
    line = box(page, 1, ANSWER + " p")
    shot(page, front_end, "4-thinking-final")
    assert live is not None and final is not None and live_line is not None and line is not None
    assert abs(live["y"] - final["y"]) <= 2 and abs(live["height"] - final["height"]) <= 2
    assert abs(live["x"] - final["x"]) <= 2
    assert live_look == final_look
    assert abs(line["y"] - live_line["y"]) <= 2, (live_line, line)
    # Opened, it shows the thinking the same way too.
    cell(page, 1).locator(THINKING_TITLE).first.click()
    shot(page, front_end, "5-thinking-open")


ERROR_BOX = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def test_errors_say_it_once_and_a_loop_tells_its_records_apart(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """Point 5: an error cell shows one status line right above one error box; an image
    shows under the status line; a loop of `generate` calls shows each record's prompt."""
    setup = (
        f"{LOAD}\nimport ollama_nb\nfrom ollama_nb.testing import make_png\n"
        "picture = make_png(64, 48)"
    )
    cells = [
        setup,
        "%%ollama no-such-model\nHi.",
        "%%ollama stand-in --image picture\nWhat is this?",
        "%%ollama stand-in-vision --image picture\nWhat is this?",
        "for question in ['What is 2 + 2?', 'And what is the capital of France, in one word?']:\n"
        "    ollama_nb.generate(question, 'stand-in', options={'num_predict': 8})",
    ]
    page = open_with(open_notebook, front_end, server, cells)
    for index in range(1, len(cells)):
        run_cell(page, cells[index], index)
        wait_cell_finished(page, index, timeout=60)
    shot(page, front_end, "6-errors")

    # Model not found: one status line, then one error box, nothing in between.
    assert cell(page, 1).locator(STATUS).count() == 1
    assert cell(page, 1).locator(ERROR_BOX).count() == 1
    assert cell(page, 1).locator(ANSWER).count() == 0
    status = cell(page, 1).locator(STATUS).inner_text()
    assert status.startswith("no-such-model · error · "), status
    error = cell(page, 1).locator(ERROR_BOX).inner_text()
    assert error.startswith("OllamaModelNotFoundError: ") and len(error.splitlines()) == 1
    status_box, error_box = box(page, 1, STATUS), box(page, 1, ERROR_BOX)
    assert status_box is not None and error_box is not None
    assert 0 <= error_box["y"] - (status_box["y"] + status_box["height"]) <= 12
    # An image sent to a model that sees none: one error box (refused before sending).
    assert cell(page, 2).locator(ERROR_BOX).count() == 1
    # An image: its thumbnail under the status line, the answer below it.
    thumbnail = box(page, 3, ".ollama-nb-images img")
    assert thumbnail is not None and 0 < thumbnail["height"] <= 160
    status_box = box(page, 3, STATUS)
    assert status_box is not None and thumbnail["y"] >= status_box["y"] + status_box["height"]

    # A loop of generate calls: each record starts with its prompt, shortened.
    statuses = cell(page, 4).locator(STATUS).all_inner_texts()
    assert [s.split(" · ")[:3] for s in statuses] == [
        ["“What is 2 + 2?”", "stand-in", "length"],
        ["“And what is the capital of France, in one word?”", "stand-in", "length"],
    ], statuses
    cell(page, 4).scroll_into_view_if_needed()
    shot(page, front_end, "7-loop")


BATCH_ROW = ".ollama-nb-batch-answers tr"


def test_batch_running_and_finished(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """Points 2 and 5 for a batch: the progress row's Stop is the compact one; the record's
    summary (on top, where the progress row was) is a sentence, and a failed row stands
    apart from the finished ones."""
    server.configure(reply="A short answer, said word by word, to be seen.", token_interval=0.05)
    setup = f"{LOAD}\nitems = [{{'name': n}} for n in 'abcdefg']\nitems[2] = {{}}"
    magic = "%%ollama stand-in --each items\nSay {item[name]}."
    page = open_with(open_notebook, front_end, server, [setup, magic])
    run_cell(page, magic, 1)
    stop = cell(page, 1).locator(STOP)
    stop.wait_for(state="visible", timeout=20_000)
    places, lines = set(), set()

    def progressed() -> bool:
        text = cell(page, 1).locator(".ollama-nb-progress").inner_text()
        if "/ 7" in text:
            places.add(round(box(page, 1, STOP)["x"]))  # type: ignore[index]
            lines.add(text)
        return "3 / 7" in text

    poll("the batch to progress", progressed, 20, page)
    assert len(places) == 1 and len(lines) >= 3, (places, lines)  # Stop stays put
    header = box(page, 1, HEADER)
    stop_box = box(page, 1, STOP)
    shot(page, front_end, "8-batch-running")
    assert stop_box is not None and stop_box["width"] <= 80 and stop_box["height"] <= 26
    wait_cell_finished(page, 1, timeout=60)
    status = poll("the record", lambda: box(page, 1, STATUS), 10, page)
    shot(page, front_end, "9-batch-finished")
    assert header is not None and abs(status["y"] - header["y"]) <= 2
    summary = cell(page, 1).locator(STATUS).inner_text()
    assert summary.startswith("stand-in · 7 answers: 6 finished, 1 failed · "), summary
    rows = page.evaluate(
        """(selector) => [...document.querySelectorAll('.jp-Notebook .jp-Cell')[1]
            .querySelectorAll(selector)].map((row) => [row.cells[1]?.textContent ?? '',
            getComputedStyle(row).backgroundColor])""",
        BATCH_ROW,
    )
    failed = {color for reason, color in rows if reason == "error"}
    finished = {color for reason, color in rows if reason == "stop"}
    assert len(failed) == 1 and failed.isdisjoint(finished), rows
