"""`%%ollama --code` in a real JupyterLab 4 and Notebook 7: the answer's code lands in a new
code cell directly below, not run, and nothing else in the notebook changes; running the
cell again inserts another cell (as jupyter-ai does)."""

from __future__ import annotations

import urllib.error
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from browser_helpers import (
    CELL,
    cell,
    cell_output_text,
    cell_prompt,
    cell_source,
    poll,
    run_cell,
    screenshot,
    wait_cell_finished,
)
from playwright.sync_api import Page

from ollama_nb.testing import StandInServer

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("front_end", ["lab", "notebook"])]

LOAD = "%load_ext ollama_nb"
MAGIC = "%%ollama stand-in --code\nRead data.csv with pandas."
AFTER = "print('the cell after')"
CODE = 'import pandas as pd\n\ndf = pd.read_csv("data.csv")\nprint(df.head())'
ANSWER = (
    "Install pandas first:\n\n```bash\npip install pandas\n```\n\n"
    f"Then read the file:\n\n```python\n{CODE}\n```\n\nThat prints the first rows.\n"
)


def editor_text(page: Page, index: int) -> str:
    """The exact text of the cell's editor: its lines joined (an empty line's inner text
    would count twice)."""
    lines = cell(page, index).locator(".cm-content .cm-line").all_text_contents()
    return "\n".join(lines)


def cell_count(page: Page) -> int:
    return page.locator(CELL).count()


def saved_cells(jupyter_server: Any, name: str, count: int) -> list[dict[str, Any]] | None:
    """The saved notebook's cells once the file holds `count` of them."""
    try:
        saved = jupyter_server.api("GET", f"/api/contents/{urllib.parse.quote(name)}")
    except urllib.error.HTTPError as exc:
        if exc.code == 400:  # read while the front end was writing it
            return None
        raise
    cells = saved["content"]["cells"]
    return cells if len(cells) == count else None


def run_code_cell(page: Page, cells_before: int) -> None:
    """Run the --code cell (index 1); wait for it to finish and for the new cell."""
    run_cell(page, MAGIC, 1)
    wait_cell_finished(page, 1, timeout=30)
    poll("a new cell below", lambda: cell_count(page) == cells_before + 1, 15, page)


def assert_new_code_cell(page: Page, index: int) -> None:
    new = cell(page, index)
    assert "jp-CodeCell" in (new.get_attribute("class") or "")
    assert editor_text(page, index) == CODE
    assert cell_prompt(page, index) in ("[ ]:", "[ ]")  # not run
    assert cell_output_text(page, index) == ""


def test_code_goes_into_a_new_cell_below(
    open_notebook: Callable[..., Page], server: StandInServer, jupyter_server: Any, front_end: str
) -> None:
    server.configure(reply=ANSWER)
    name = f"code-cell-{front_end}.ipynb"
    page = open_notebook(front_end, name, [LOAD, MAGIC, AFTER], env={"OLLAMA_HOST": server.url})
    run_cell(page, LOAD, 0)
    wait_cell_finished(page, 0, timeout=30)

    run_code_cell(page, 3)
    poll(
        "the record's code line",
        lambda: "code: 4 lines put in a new cell below" in cell_output_text(page, 1),
        15,
        page,
    )
    assert_new_code_cell(page, 2)
    assert cell_source(page, 3) == AFTER and cell_output_text(page, 3) == ""
    screenshot(page, f"code-{front_end}-1-inserted")

    # Again: another cell, directly below; the first one moves down, as it was.
    run_code_cell(page, 4)
    assert_new_code_cell(page, 2)
    assert_new_code_cell(page, 3)
    assert cell_source(page, 4) == AFTER
    screenshot(page, f"code-{front_end}-2-again")

    # The saved file: the inserted cells are code cells holding exactly the code, never
    # run; the others are as they were.
    page.keyboard.press("ControlOrMeta+s")
    cells = poll("the notebook to be saved", lambda: saved_cells(jupyter_server, name, 5), 15)
    assert ["".join(c["source"]) for c in cells] == [LOAD, MAGIC, CODE, CODE, AFTER]
    for inserted in cells[2:4]:
        assert inserted["cell_type"] == "code"
        assert inserted["execution_count"] is None and inserted["outputs"] == []
    assert cells[4]["execution_count"] is None and cells[4]["outputs"] == []
    assert cells[0]["execution_count"] == 1 and cells[1]["execution_count"] == 3


FAILING = "total = sum(prices[item] for item in baskets)"
FIXED = "total = sum(prices[item] for item in basket)"
FIX_ANSWER = f"`baskets` is a typo for `basket`.\n\n```python\n{FIXED}\n```\n"


def test_fix_puts_the_corrected_cell_below(
    open_notebook: Callable[..., Page], server: StandInServer, front_end: str
) -> None:
    server.configure(reply=FIX_ANSWER)
    setup = "prices = {'apple': 3}\nbasket = ['apple'] * 4"
    cells = [LOAD, setup, FAILING, "%ollama fix stand-in"]
    # A last cell, so that Shift+Enter on the fix moves to it instead of adding one.
    page = open_notebook(front_end, None, [*cells, AFTER], env={"OLLAMA_HOST": server.url})
    for index, source in enumerate(cells):
        run_cell(page, source, index)
        wait_cell_finished(page, index, timeout=30)
    assert "NameError" in cell_output_text(page, 2)
    poll("a new cell below the fix", lambda: cell_count(page) == 6, 15, page)
    assert editor_text(page, 4) == FIXED and editor_text(page, 5) == AFTER
    assert cell_prompt(page, 4) in ("[ ]:", "[ ]") and cell_output_text(page, 4) == ""
    assert "code: 1 line put in a new cell below" in cell_output_text(page, 3)
    assert FAILING in server.last.body["prompt"]
    screenshot(page, f"fix-{front_end}")
