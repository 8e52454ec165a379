"""End to end in a real browser: `%%ollama` cells in JupyterLab 4 and Notebook 7, against
the stand-in server.

What a user sees is asserted in the DOM: the live view (header with model, elapsed counter,
token count and Stop; the text streaming below) and the static record that replaces it (the
answer as safe HTML, then one status line). Cell 0 loads the extension, cell 1 is the request.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from browser_helpers import (
    ARTIFACTS,
    WIDGET_BUTTON,
    cell,
    cell_output_text,
    poll,
    run_cell,
    screenshot,
    wait_cell_finished,
)
from playwright.sync_api import Locator, Page

from ollama_nb.testing import RequestRecord, StandInServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("front_end", ["lab", "notebook"])]

LOAD = "%load_ext ollama_nb"
CELL = 1  # the %%ollama cell

# The live view (ollama_nb/_view.py) and the static record (ollama_nb/_render.py).
LABEL = "div.widget-label"  # elapsed counter and token count (not the HTML widget's <label>)
LIVE_TEXT = ".ollama-nb-live-answer"  # the answer's Output widgets, not the thinking ones
RECORD = ".ollama-nb-record"
ANSWER = ".ollama-nb-answer"
STATUS = ".ollama-nb-status"
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
WIDGET_OUTPUT = "[data-mime-type='application/vnd.jupyter.widget-view+json']"
ELAPSED = re.compile(r"^\d+\.\d s$")

HOSTILE = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss2=1</script> **bold** and a'
    " code block:\n\n```html\n<b>tag</b>\n```"
)
TIMINGS = ARTIFACTS / "browser_timings.txt"

# Proof that scripts could run: a probe image with the same broken src as the hostile answer's
# fires its onerror. Once it has, an <img onerror> rendered from the answer would have too.
PROBE_JS = """() => new Promise((resolve) => {
    const img = document.createElement('img');
    img.onerror = () => { img.remove(); resolve(true); };
    img.src = 'x';
    document.body.appendChild(img);
    setTimeout(() => resolve(false), 5000);
})"""

# Times a Stop click in the page: from the click event on the cell's button to the moment
# the cell's prompt shows an execution count again.
STOP_TIMING_JS = """(index) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const button = node.querySelector('.jp-OutputArea-output button.jupyter-button');
    const prompt = () => (node.querySelector('.jp-InputPrompt')?.textContent ?? '')
        .replace(/\\u00a0/g, ' ').trim();
    const t = (window.__stopTiming = { clicked: null, finished: null });
    button.addEventListener('click', () => { t.clicked = performance.now(); },
        { capture: true, once: true });
    new MutationObserver((_, observer) => {
        if (t.clicked !== null && /^\\[\\d+\\]:?$/.test(prompt())) {
            t.finished = performance.now();
            observer.disconnect();
        }
    }).observe(node, { subtree: true, childList: true, characterData: true });
}"""


# -- helpers ----------------------------------------------------------------------------------


def start_request(
    open_notebook: Callable[..., Page],
    front_end: str,
    server: StandInServer,
    magic: str,
    name: str | None = None,
) -> Page:
    """Open a notebook on the stand-in, load the extension (cell 0), run `magic` (cell 1)."""
    cells = [LOAD, magic]
    page = open_notebook(front_end, name, cells, env={"OLLAMA_HOST": server.url})
    run_cell(page, LOAD, 0)
    wait_cell_finished(page, 0, timeout=30)
    run_cell(page, magic, CELL)
    return page


def text_of(page: Page, selector: str) -> str:
    """Text of the first `selector` in the request cell ("" while there is none)."""
    found = cell(page, CELL).locator(selector)
    return found.first.inner_text().strip() if found.count() else ""


def wait_text(page: Page, selector: str, timeout: float = 30) -> str:
    """Wait until `selector` in the request cell shows some text; return it."""
    return poll(f"{selector} to show text", lambda: text_of(page, selector), timeout, page)


def wait_record(page: Page, timeout: float = 30) -> str:
    """Wait until the request cell finished and shows the static record; its status line."""
    wait_cell_finished(page, CELL, timeout=timeout)
    return wait_text(page, STATUS, timeout=10)


def words(text: str) -> list[str]:
    return text.split()


def live_button(page: Page) -> Locator:
    return cell(page, CELL).locator(WIDGET_BUTTON)


def generate_record(server: StandInServer) -> RequestRecord:
    records = [r for r in server.requests if r.path == "/api/generate"]
    assert len(records) == 1, [r.path for r in server.requests]
    return records[0]


def assert_no_script_ran(page: Page) -> None:
    """Neither hostile script ran, although a probe shows that an onerror would have."""
    assert page.evaluate(PROBE_JS) is True
    ran = page.evaluate("() => [typeof window.__xss, typeof window.__xss2]")
    assert ran == ["undefined", "undefined"]
    output = cell(page, CELL).locator(".jp-OutputArea")
    assert output.locator("img, script").count() == 0


def assert_hostile_record_is_text(page: Page) -> None:
    """The record shows the hostile answer's HTML as text (its <img> as a link, never
    fetched), and its Markdown rendered."""
    answer = cell(page, CELL).locator(ANSWER)
    assert answer.is_visible()
    text = answer.inner_text()
    assert "image<script>window.__xss2=1</script>" in text and "onerror" not in text
    assert answer.locator("a.ollama-nb-image").inner_text() == "image"
    assert answer.locator("strong").inner_text() == "bold"
    assert answer.locator("pre code").inner_text().strip() == "<b>tag</b>"
    assert answer.locator("img, script, b").count() == 0


def save_timing(line: str) -> None:
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with TIMINGS.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


# -- scenarios --------------------------------------------------------------------------------


def test_slow_stream_counts_and_grows_then_records(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    magic = "%%ollama stand-in -o standin_token_interval=0.1 -o standin_tokens=60\nTell a story."
    page = start_request(open_notebook, front_end, server, magic)
    live_button(page).wait_for(state="visible", timeout=20_000)
    assert live_button(page).inner_text().strip() == "Stop"
    assert text_of(page, ".widget-html-content") == "stand-in"

    seen: list[str] = []

    def counter_changed_three_times() -> bool:
        for value in cell(page, CELL).locator(LABEL).all_inner_texts():
            value = value.strip()
            if ELAPSED.match(value) and (not seen or seen[-1] != value):
                seen.append(value)
        return len(seen) >= 4  # the first value and three changes

    poll("the elapsed counter to change 3 times", counter_changed_three_times, 10, page)
    assert seen == sorted(seen, key=lambda v: float(v.split()[0])), seen

    first = wait_text(page, LIVE_TEXT, timeout=10)

    def grown() -> str:
        text = text_of(page, LIVE_TEXT)
        return text if len(text) > len(first) else ""

    second = poll("the live text to grow", grown, 10, page)
    assert second.startswith(first)
    assert first.startswith("[stand-in]")
    screenshot(page, f"e2e-{front_end}-1-live")

    status = wait_record(page, timeout=30)
    assert "stand-in · stop · 60 tokens ·" in status
    assert live_button(page).count() == 0
    answer = text_of(page, ANSWER)
    assert words(answer)[: len(words(second))] == words(second)
    record = generate_record(server)
    assert record.wait_closed(5)
    assert record.completed
    screenshot(page, f"e2e-{front_end}-1-record")


def test_stop_button_ends_the_request_fast(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    magic = "%%ollama stand-in -o standin_token_interval=0.1 -o standin_tokens=400\nGo on."
    page = start_request(open_notebook, front_end, server, magic)
    wait_text(page, LIVE_TEXT, timeout=20)  # drawn and streaming
    button = live_button(page)
    assert button.inner_text().strip() == "Stop"
    page.evaluate(STOP_TIMING_JS, CELL)

    started = time.monotonic()
    button.click()
    page.wait_for_function("() => window.__stopTiming.finished !== null", timeout=10_000)
    wall = time.monotonic() - started
    timing = page.evaluate("() => window.__stopTiming")
    in_page = (timing["finished"] - timing["clicked"]) / 1000
    save_timing(
        f"{front_end}: Stop click -> cell finished {in_page * 1000:.0f} ms in the page"
        f" ({wall * 1000:.0f} ms from Playwright's click call)"
    )
    assert in_page <= 2.0
    assert wall <= 2.0

    record = generate_record(server)
    assert record.wait_closed(2)
    assert record.disconnected_at is not None
    assert not record.completed
    status = wait_record(page, timeout=10)
    assert "stand-in · stopped ·" in status
    assert live_button(page).count() == 0
    assert text_of(page, ANSWER).startswith("[stand-in]")
    screenshot(page, f"e2e-{front_end}-2-stopped")


def test_read_timeout_is_one_line_and_keeps_the_text(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    magic = (
        "%%ollama stand-in --read-timeout 1 -o standin_stall_after=3"
        " -o standin_reply='One two three four five six'\nCount."
    )
    page = start_request(open_notebook, front_end, server, magic)
    status = wait_record(page, timeout=30)
    assert "stand-in · timeout (read) · 3 tokens ·" in status
    assert text_of(page, ANSWER) == "One two three"

    errors = cell(page, CELL).locator(STDERR)
    poll("the error output", errors.count, 10, page)
    assert errors.count() == 1
    error = errors.first.inner_text().strip()
    assert error.startswith("OllamaTimeoutError: read timeout")
    assert len(error.splitlines()) == 1, error
    assert "Traceback" not in cell_output_text(page, CELL)
    screenshot(page, f"e2e-{front_end}-3-timeout")


def test_hostile_answer_stays_text(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    server.configure(reply=HOSTILE, token_interval=0.2)
    magic = "%%ollama stand-in\nSay something dangerous."
    page = start_request(open_notebook, front_end, server, magic)

    def streamed_html() -> str:
        text = text_of(page, LIVE_TEXT)
        return text if "<script>" in text else ""

    live = poll("the hostile HTML to stream", streamed_html, 20, page)
    assert live.startswith("image<script>") and "onerror" not in live  # <img>: a link
    assert live_button(page).count() == 1  # still streaming
    assert_no_script_ran(page)
    screenshot(page, f"e2e-{front_end}-4-live")

    status = wait_record(page, timeout=30)
    assert "stand-in · stop ·" in status
    assert_hostile_record_is_text(page)
    assert_no_script_ran(page)
    screenshot(page, f"e2e-{front_end}-4-record")


def test_saved_record_reads_after_kernel_shutdown(
    open_notebook: Callable[..., Page], server: StandInServer, jupyter_server: Any, front_end: str
) -> None:
    server.configure(reply=HOSTILE)
    name = f"e2e-saved-record-{front_end}.ipynb"
    magic = "%%ollama stand-in\nSay something dangerous."
    page = start_request(open_notebook, front_end, server, magic, name=name)
    status = wait_record(page, timeout=30)
    assert "stand-in · stop ·" in status

    page.keyboard.press("ControlOrMeta+s")
    path = f"/api/contents/{urllib.parse.quote(name)}"

    def saved_outputs() -> list[dict[str, Any]] | None:
        try:
            saved = jupyter_server.api("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 400:  # read while the front end was writing it: not saved yet
                return None
            raise
        outputs = saved["content"]["cells"][CELL]["outputs"]
        html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        return outputs if "ollama-nb-status" in html else None

    outputs = poll(f"{name} to be saved with the record", saved_outputs, 15, page)
    # The live view's display is emptied in place (so a loop of requests keeps one record
    # each): the file holds the record and, before it, a display with no data at all.
    shown = [o for o in outputs if o.get("data")]
    assert len(shown) == 1, outputs
    assert "application/vnd.jupyter.widget-view+json" not in shown[0]["data"]
    assert all(o["output_type"] == "display_data" for o in outputs if not o.get("data"))

    kernel_id = jupyter_server.kernel_of(name)["id"]
    page.close()
    jupyter_server.api("DELETE", f"/api/kernels/{kernel_id}")

    def kernel_gone() -> bool:
        try:
            jupyter_server.api("GET", f"/api/kernels/{kernel_id}")
        except urllib.error.HTTPError as exc:
            return exc.code == 404
        return False

    poll("the kernel to be shut down", kernel_gone, 20)

    page = open_notebook(front_end, name, create=False)
    status = wait_text(page, STATUS, timeout=20)
    assert "stand-in · stop ·" in status
    assert cell(page, CELL).locator(STATUS).is_visible()
    assert_hostile_record_is_text(page)
    shown = cell_output_text(page, CELL)
    for broken in ("Error displaying widget", "Loading widget", "Model not found"):
        assert broken not in shown
    assert page.locator(WIDGET_OUTPUT).count() == 0
    assert_no_script_ran(page)
    screenshot(page, f"e2e-{front_end}-5-reopened")


# -- maths and money; the live view reads like the record ------------------------------------

# Each in its own paragraph: by Pandoc's rules "$HOME … US$" in one paragraph is maths.
MONEY = ("Tickets cost $5 and parking is $10.", "Set $HOME first.", "It is US$ 3.")
MATHS_REPLY = (
    "\n\n".join(MONEY)
    + "\n\nInline $x^2$ and \\(a+b\\) here.\n\n$$E=mc^2$$\n\n\\[\\int_0^1 f\\]\n\n"
    + "```sh\necho $PATH $y$ \\(z\\)\n```\n\nThe **end** comes after a few more words."
)
CODE = "echo $PATH $y$ \\(z\\)"
MATH_OUTPUT = "mjx-container"  # what MathJax 3/4 leaves where it typeset maths


def maths_count(page: Page, selector: str) -> int:
    return cell(page, CELL).locator(f"{selector} {MATH_OUTPUT}").count()


def assert_money_and_code_as_written(page: Page, selector: str) -> None:
    answer = cell(page, CELL).locator(selector)
    for money in MONEY:
        paragraph = answer.locator("p", has_text=money.split()[0]).first
        assert paragraph.inner_text().strip() == money
        assert paragraph.locator(MATH_OUTPUT).count() == 0
    code = answer.locator("pre code", has_text="echo").first
    poll("the code block", lambda: code.inner_text().strip() == CODE, 20, page)
    assert code.locator(MATH_OUTPUT).count() == 0


def test_maths_typeset_and_money_as_written(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    server.configure(reply=MATHS_REPLY, token_interval=0.3)
    page = start_request(open_notebook, front_end, server, "%%ollama stand-in\nPrices?")

    # Live: the finished blocks are typeset while the answer still streams.
    poll("maths in the live view", lambda: maths_count(page, LIVE_TEXT) >= 3, 30, page)
    assert live_button(page).count() == 1  # still streaming
    assert_money_and_code_as_written(page, LIVE_TEXT)
    screenshot(page, f"e2e-{front_end}-6-maths-live")

    wait_record(page, timeout=30)
    poll("maths in the record", lambda: maths_count(page, ANSWER) == 4, 20, page)
    assert_money_and_code_as_written(page, ANSWER)
    assert text_of(page, f"{ANSWER} strong") == "end"
    screenshot(page, f"e2e-{front_end}-6-maths-record")


LOOK_JS = """([selector, text]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
    const p = [...node.querySelectorAll(selector + ' p')].find(
        (e) => e.textContent.includes(text));
    if (!p) return null;
    const s = getComputedStyle(p);
    return {font: s.fontFamily, size: s.fontSize, wrap: s.overflowWrap + ' ' + s.wordBreak,
            white: s.whiteSpace, width: p.getBoundingClientRect().width, tag: p.tagName};
}"""


def test_live_view_is_markdown_in_the_records_look(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    long_words = " ".join(["extraordinarily"] * 40)
    reply = f"# Heading\n\nSome **bold** text and `code`.\n\n- one\n- two\n\n{long_words}\n\nEnd."
    server.configure(reply=reply, token_interval=0.1)
    page = start_request(open_notebook, front_end, server, "%%ollama stand-in\nWrite.")
    live = cell(page, CELL).locator(LIVE_TEXT)
    poll("a list in the live view", lambda: live.locator("li").count() == 2, 30, page)
    assert live.locator("h1").inner_text().strip() == "Heading"
    assert live.locator("strong").inner_text().strip() == "bold"
    assert live.locator("pre").count() == 0  # not a monospace text stream

    poll("the long paragraph", lambda: "extraordinarily" in text_of(page, LIVE_TEXT), 30, page)
    live_look = page.evaluate(LOOK_JS, [LIVE_TEXT, "extraordinarily"])
    live_lines = live.locator("p", has_text="extraordinarily").first.inner_text()
    screenshot(page, f"e2e-{front_end}-7-live-markdown")

    wait_record(page, timeout=30)
    record_look = page.evaluate(LOOK_JS, [ANSWER, "extraordinarily"])
    assert live_look is not None and record_look is not None
    for key in ("font", "size", "wrap", "white", "tag"):
        assert live_look[key] == record_look[key], (key, live_look, record_look)
    assert abs(live_look["width"] - record_look["width"]) < 40, (live_look, record_look)
    # No word is cut in two: every word of the paragraph shows whole.
    assert set(live_lines.split()) <= {"extraordinarily"}
    screenshot(page, f"e2e-{front_end}-7-record")


THUMBNAIL_JS = """() => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
    return [...node.querySelectorAll('.ollama-nb-record .ollama-nb-images img')].map((img) => ({
        decoded: img.complete && img.naturalWidth > 0,
        natural: [img.naturalWidth, img.naturalHeight],
        shown: img.getBoundingClientRect().height,
    }));
}"""


def test_an_image_sent_shows_as_a_thumbnail_in_the_record(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """A picture made in the notebook goes to a vision model; the record shows it, small."""
    setup = f"{LOAD}\nfrom ollama_nb.testing import make_png\npicture = make_png(640, 480)"
    magic = "%%ollama stand-in-vision --image picture\nWhat is in this picture?"
    page = open_notebook(front_end, None, [setup, magic], env={"OLLAMA_HOST": server.url})
    run_cell(page, setup, 0)
    wait_cell_finished(page, 0, timeout=30)
    run_cell(page, magic, CELL)
    status = wait_record(page, timeout=30)
    assert "stand-in-vision · stop ·" in status
    assert "saw 1 image: 640x480 PNG" in text_of(page, ANSWER)

    def decoded() -> list[dict[str, Any]] | None:
        shown = page.evaluate(THUMBNAIL_JS)
        return shown if shown and all(t["decoded"] for t in shown) else None

    thumbnails = poll("the thumbnail to decode", decoded, 10, page)
    assert len(thumbnails) == 1, thumbnails
    (thumbnail,) = thumbnails
    assert thumbnail["decoded"], thumbnail
    assert 0 < thumbnail["shown"] <= 160, thumbnail
    (record,) = [r for r in server.requests if r.path == "/api/generate"]
    assert [(i.width, i.height) for i in record.images] == [(640, 480)]
    screenshot(page, f"e2e-{front_end}-8-thumbnail")


def test_a_tool_loop_with_confirm_and_its_record(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    """--tools --confirm: the live view lists the call and asks; a real click on Run runs
    it; the record lists the call and its result above the answer."""
    setup = f"{LOAD}\ndef add(a: int, b: int) -> int:\n    return a + b"
    magic = "%%ollama stand-in-tools --tools add --confirm\ncall: add(a=1, b=2)"
    page = open_notebook(front_end, None, [setup, magic], env={"OLLAMA_HOST": server.url})
    run_cell(page, setup, 0)
    wait_cell_finished(page, 0, timeout=30)
    run_cell(page, magic, CELL)
    asking = wait_text(page, ".ollama-nb-live-tools", timeout=30)
    assert "add(a=1, b=2)" in asking and "waiting for Run / Skip" in asking
    run = cell(page, CELL).locator(WIDGET_BUTTON, has_text="Run")
    poll("the Run button", lambda: run.count() == 1, 10, page)
    screenshot(page, f"e2e-{front_end}-9-confirm")
    run.click()
    status = wait_record(page, timeout=30)
    assert "stand-in-tools · stop ·" in status
    tools = text_of(page, ".ollama-nb-tools")
    assert "Tool calls" in tools and "add(a=1, b=2) → 3" in tools
    assert text_of(page, ANSWER) == "[stand-in] tool results: add → 3"
    record = cell(page, CELL).locator(RECORD).inner_text()
    assert record.index("add(a=1, b=2) → 3") < record.index("[stand-in] tool results")
    screenshot(page, f"e2e-{front_end}-10-tools-record")
