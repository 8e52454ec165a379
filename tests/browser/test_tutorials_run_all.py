"""Run All in a real JupyterLab 4 / Notebook 7 completes every tutorial.

Each tutorial is copied (as `notebooks/open` copies it, outputs and all) into the test
server's root, opened, its outputs cleared, and run with Run ▸ Run All Cells. Then, in the
notebook as the page saves it, every code cell must have an execution count, and only the
cells tagged `raises-exception` (the tutorial's deliberate errors) may show an error; they
must show one. The kernel talks to
a fresh stand-in, as under nbval. Cells are matched by id: a `--code` or `%ollama fix`
cell inserts a new cell below itself during the run.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
from pathlib import Path

import pytest
from browser_helpers import CELL, PROMPT, REPO_ROOT, poll, screenshot
from notebook_standin import notebook_env
from playwright.sync_api import Page

from ollama_nb.testing import StandInServer

pytestmark = pytest.mark.browser

TUTORIALS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
RAISES = "raises-exception"
SAVE_EVERY = 2.0  # s between two saves while the run goes on
TAKEN = re.compile(r"^\[(\*|\d+)\]:?$")  # a prompt of a cell that runs or ran
RUN_ALL_TIMEOUT = 240  # s: 02 waits on timeouts on purpose (about 10 s of them); a busy CPU


def run_all(page: Page) -> None:
    """Clear every output, then Run ▸ Run All Cells (the same menu in both front ends), and
    see some cell taken: a menu click that went astray fails here, by name."""
    menu = page.locator(".lm-MenuBar-itemLabel")
    menu.get_by_text("Edit", exact=True).click()
    item = page.locator(".lm-Menu-itemLabel")
    item.get_by_text("Clear Outputs of All Cells", exact=True).click()
    poll(
        "every output to be cleared",
        lambda: page.locator(".jp-Notebook .jp-OutputArea-output").count() == 0,
        20,
        page,
    )
    menu.get_by_text("Run", exact=True).click()
    item.get_by_text("Run All Cells", exact=True).click()
    # Any prompt: the page draws only the cells in view, and follows the run down.
    poll(
        "Run All to take a cell (a prompt showing [*] or a count)",
        lambda: any(TAKEN.match(p) for p in shown_prompts(page)),
        60,
        page,
    )


def shown_prompts(page: Page) -> list[str]:
    """The input prompts of the cells the page draws now."""
    texts = page.locator(f"{CELL} {PROMPT}").all_inner_texts()
    return [t.replace("\u00a0", " ").strip() for t in texts]


def where_it_stands(page: Page, saved: list[dict], codes: list[int]) -> str:
    """What a Run All that never ended left: each code cell's count in the saved file, the
    prompts the page shows, and any dialog in the way of saving."""
    counts = {i: saved[i].get("execution_count") for i in codes} if saved else "not read"
    try:
        prompts = shown_prompts(page)
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
    except Exception as exc:  # the page may be gone: still say what the file holds
        prompts, dialogs = [f"page unreadable: {exc}"], []
    return f"saved counts {counts}; prompts shown {prompts}; dialogs {dialogs}"


@pytest.mark.timeout(RUN_ALL_TIMEOUT + 60)
@pytest.mark.parametrize("front_end", ["lab", "notebook"])
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_run_all_completes(open_notebook, jupyter_server, front_end: str, tutorial: Path) -> None:
    nb = json.loads(tutorial.read_text())
    codes = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    ids = {i: nb["cells"][i]["id"] for i in codes}
    for i in codes:  # the file starts without counts: only the run below can set them
        nb["cells"][i]["execution_count"] = None
    with StandInServer() as standin:
        spec = jupyter_server.add_kernelspec("python3", notebook_env(standin.url))
        nb["metadata"]["kernelspec"] = {"name": spec, "display_name": spec, "language": "python"}
        name = f"{front_end}-{tutorial.name}"
        jupyter_server.put_notebook(name, nb)
        path = f"/api/contents/{urllib.parse.quote(name)}"
        page = open_notebook(front_end, name, create=False)
        run_all(page)
        saved_at = [0.0]
        saved: list[dict] = []  # the cells as last read from the file

        def all_counted() -> list[dict] | None:
            # Read from the notebook as the page saves it, not from the DOM: Notebook 7
            # does not render cells scrolled far out of view, long tutorials included.
            if time.monotonic() - saved_at[0] >= SAVE_EVERY:
                page.keyboard.press("ControlOrMeta+s")
                saved_at[0] = time.monotonic()
            try:
                cells = jupyter_server.api("GET", path)["content"]["cells"]
            except urllib.error.HTTPError:  # read while a save replaced the file: next time
                return None
            by_id = {c.get("id"): c for c in cells}
            saved[:] = [by_id.get(ids.get(i), {}) for i in range(len(nb["cells"]))]
            counted = all(isinstance(saved[i].get("execution_count"), int) for i in codes)
            return saved if counted else None

        try:
            cells = poll("every code cell to show an execution count", all_counted,
                         RUN_ALL_TIMEOUT, page)  # fmt: skip
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {where_it_stands(page, saved, codes)}") from None
        finally:
            screenshot(page, f"run-all-{front_end}-{tutorial.stem}")

    counts = [cells[i]["execution_count"] for i in codes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    for i in codes:
        tagged = RAISES in nb["cells"][i]["metadata"].get("tags", [])
        errors = [
            o
            for o in cells[i]["outputs"]
            if o["output_type"] == "error"
            or (o["output_type"] == "stream" and o["name"] == "stderr")
        ]
        if tagged:
            assert errors, f"cell {i} is tagged {RAISES} but showed no error"
        else:
            assert not errors, f"cell {i} (untagged) showed an error: {errors}"
