"""In a real browser: a synchronous cell's live view streams (its widget updates travel
unrecorded, under a parent header of their own, and the front end applies them), and a
`--background` cell returns once the front end drew its view, the stream going on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from browser_helpers import cell, cell_prompt, poll, wait_cell_finished
from playwright.sync_api import Page
from test_e2e import (
    CELL,
    ELAPSED,
    LABEL,
    LIVE_TEXT,
    generate_record,
    start_request,
    text_of,
    wait_text,
)

from ollama_nb.testing import StandInServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("front_end", ["lab", "notebook"])]


def counter_changes(page: Page, times: int, timeout: float) -> list[str]:
    seen: list[str] = []

    def changed() -> bool:
        for value in cell(page, CELL).locator(LABEL).all_inner_texts():
            value = value.strip()
            if ELAPSED.match(value) and (not seen or seen[-1] != value):
                seen.append(value)
        return len(seen) > times

    poll(f"the elapsed counter to change {times} times", changed, timeout, page)
    return seen


def test_a_synchronous_cell_streams_in_the_page(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    magic = (
        "%%time\n%%ollama stand-in -o standin_token_interval=0.1 -o standin_tokens=60\n"
        "Tell a story."
    )
    page = start_request(open_notebook, front_end, server, magic)
    counter_changes(page, 3, timeout=20)
    first = wait_text(page, LIVE_TEXT, timeout=10)
    assert cell_prompt(page, CELL).startswith("[*]")  # all of it while the cell still runs
    assert first.startswith("[stand-in]")
    wait_cell_finished(page, CELL, timeout=30)


def test_a_background_cell_returns_while_its_answer_streams(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    magic = (
        "%%ollama stand-in --background -o standin_token_interval=0.1 -o standin_tokens=100\n"
        "Tell a long story."
    )
    page = start_request(open_notebook, front_end, server, magic)
    wait_cell_finished(page, CELL, timeout=20)
    record = generate_record(server)
    assert not record.closed.is_set()  # the cell ended, the answer still streams
    counter_changes(page, 2, timeout=20)
    assert record.wait_closed(30) and record.completed
    poll("the record", lambda: text_of(page, ".ollama-nb-status"), 15, page)
