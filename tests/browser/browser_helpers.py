"""Helpers that drive a JupyterLab 4 / Notebook 7 notebook page with Playwright's sync API.

Both front ends share the notebook DOM, so every helper works on either. A cell is addressed by
its ``index`` among all cells of the notebook (code and Markdown). Every wait has a deadline:
a helper that runs out of time raises ``TimeoutError`` (after saving a screenshot into
``artifacts/``) and never sleeps a fixed time.

    run_cell(page, "print(6 * 7)", 0)          # type into cell 0, Shift+Enter, wait until taken
    wait_cell_finished(page, 0, timeout=30)    # the prompt shows [N] again -> returns N
    cell_output_text(page, 0)                  # "42"
    wait_cell_output(page, 0, "42")            # poll the output until it contains "42"
    screenshot(page, "lab-smoke")              # artifacts/lab-smoke.png
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from playwright.sync_api import Locator, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Git-ignored folder for screenshots, console logs and the Jupyter server log.
ARTIFACTS = REPO_ROOT / "artifacts"

# Selectors measured on JupyterLab 4.6 and Notebook 7.6; tests/browser/test_smoke.py checks
# them in both front ends (the server set-up is described in tests/browser/conftest.py).
CELL = ".jp-Notebook .jp-Cell"
CODE_EDITOR = ".jp-Notebook .jp-CodeCell .cm-content"
EDITOR = ".cm-content"
PROMPT = ".jp-InputPrompt"
OUTPUT_AREA = ".jp-OutputArea"
WIDGET_BUTTON = ".jp-OutputArea-output button.jupyter-button"
WIDGET_LABEL = ".widget-label"
KERNEL_IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"

_FINISHED = re.compile(r"^\[(\d+)\]:?$")
_POLL = 0.05  # seconds between two looks at the page

T = TypeVar("T")


def poll(
    what: str,
    check: Callable[[], T],
    timeout: float,
    page: Page | None = None,
    shot: str | None = None,
) -> T:
    """Call ``check()`` until it returns something truthy, and return that; bounded.

    On timeout raise ``TimeoutError`` naming ``what`` and the last value seen, after saving a
    screenshot ``artifacts/<shot>.png`` when a page is given.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        if page is not None:
            page.wait_for_timeout(_POLL * 1000)  # lets Playwright process events meanwhile
        else:
            time.sleep(_POLL)
    where = ""
    if page is not None:
        try:
            path = screenshot(page, shot or "timeout-" + re.sub(r"\W+", "-", what)[:60])
            where = f" (screenshot: {path})"
        except Exception as exc:  # the page may be gone: still report the timeout
            where = f" (no screenshot: {exc})"
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}{where}")


def cell(page: Page, index: int) -> Locator:
    """The ``index``-th cell (code or Markdown) of the notebook."""
    return page.locator(CELL).nth(index)


def _norm(text: str) -> str:
    lines = text.replace("\u00a0", " ").replace("\u200b", "").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def cell_prompt(page: Page, index: int) -> str:
    """The cell's input prompt as shown: ``[ ]:``, ``[*]:`` or ``[3]:`` ("" when none)."""
    prompt = cell(page, index).locator(PROMPT).first
    if prompt.count() == 0:
        return ""
    return prompt.inner_text().replace("\u00a0", " ").strip()


def cell_source(page: Page, index: int) -> str:
    """The text in the cell's editor as the page shows it (lines joined by newlines)."""
    return _norm(cell(page, index).locator(EDITOR).first.inner_text())


def run_cell(page: Page, code: str, index: int = 0, timeout: float = 15) -> None:
    """Replace the source of cell ``index`` with ``code`` and run it with Shift+Enter.

    Waits (bounded) for the cell to exist, for the editor to hold exactly ``code``, and then for
    the front end to take the execution (the prompt changes, to ``[*]`` or straight to a new
    ``[N]``). Does NOT wait for the cell to finish: use :func:`wait_cell_finished`. The code is
    inserted as one text input, so the editor adds no auto-indent or closing brackets.
    """
    target = cell(page, index)
    target.wait_for(state="visible", timeout=timeout * 1000)
    editor = target.locator(EDITOR).first
    editor.click()  # after Shift+Enter the page is in command mode: enter the editor first
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    if code:
        page.keyboard.insert_text(code)
    want = _norm(code)
    poll(
        f"cell {index} to hold the code",
        lambda: cell_source(page, index) == want,
        timeout,
        page,
    )
    before = cell_prompt(page, index)
    page.keyboard.press("Shift+Enter")
    poll(
        f"cell {index} to start (prompt was {before!r})",
        lambda: cell_prompt(page, index) != before,
        timeout,
        page,
    )


def wait_cell_finished(page: Page, index: int, timeout: float = 60) -> int:
    """Wait until cell ``index`` shows an execution count (``[N]:``, no longer ``[*]``).

    Returns N. Call it after :func:`run_cell` (which waits until the run was taken, so a cell
    that ran before does not count as finished).
    """

    def finished() -> int | None:
        match = _FINISHED.match(cell_prompt(page, index))
        return int(match.group(1)) if match else None

    return poll(f"cell {index} to finish", finished, timeout, page)


def cell_output_text(page: Page, index: int) -> str:
    """All text in the output area of cell ``index`` ("" when it has no output)."""
    area = cell(page, index).locator(OUTPUT_AREA)
    if area.count() == 0:
        return ""
    return _norm(area.first.inner_text())


def wait_cell_output(
    page: Page, index: int, expected: str | re.Pattern[str], timeout: float = 30
) -> str:
    """Wait until the output text of cell ``index`` contains ``expected`` (a str or a compiled
    regex searched in it); returns the whole output text."""

    def seen() -> str | None:
        text = cell_output_text(page, index)
        if isinstance(expected, str):
            return text if expected in text else None
        return text if expected.search(text) else None

    return poll(f"output of cell {index} to contain {expected!r}", seen, timeout, page)


def screenshot(page: Page, name: str) -> Path:
    """Save a PNG of the page as ``artifacts/<name>.png`` (git-ignored) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path))
    return path
