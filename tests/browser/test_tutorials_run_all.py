"""Run All in a real JupyterLab 4 / Notebook 7 completes every tutorial.

Each tutorial is copied (as `notebooks/open` copies it, outputs and all) into the test
server's root, opened, its outputs cleared, and run with Run ▸ Run All Cells. Then every
code cell must show an execution count, and only the cells tagged `raises-exception` (the
tutorial's deliberate errors) may show an error; they must show one. The kernel talks to
a fresh stand-in, as under nbval.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser_helpers import REPO_ROOT, poll, screenshot
from notebook_standin import notebook_env
from playwright.sync_api import Page

from ollama_nb.testing import StandInServer

pytestmark = pytest.mark.browser

TUTORIALS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
RAISES = "raises-exception"
ERROR_OUTPUT = (
    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
    " .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
)
RUN_ALL_TIMEOUT = 240  # s: 02 waits on timeouts on purpose (about 10 s of them); a busy CPU
PAGE_CELLS_JS = """(errorSelector) => [...document.querySelectorAll('.jp-Notebook .jp-Cell')]
    .map((node) => ({
        prompt: (node.querySelector('.jp-InputPrompt')?.textContent ?? '')
            .replace(/\\u00a0/g, ' ').trim(),
        errors: [...node.querySelectorAll(errorSelector)].map((e) => e.textContent.trim()),
    }))"""
_COUNT = re.compile(r"^\[(\d+)\]:?$")


def page_cells(page: Page) -> list[dict]:
    """Every cell's prompt and error texts, read from the DOM (textContent: JupyterLab
    skips rendering cells scrolled out of view, and innerText is empty there)."""
    return page.evaluate(PAGE_CELLS_JS, ERROR_OUTPUT)


def run_all(page: Page, front_end: str) -> None:
    """Clear every output, then Run ▸ Run All Cells (the same menu in both front ends)."""
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


@pytest.mark.parametrize("front_end", ["lab", "notebook"])
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_run_all_completes(open_notebook, jupyter_server, front_end: str, tutorial: Path) -> None:
    nb = json.loads(tutorial.read_text())
    with StandInServer() as standin:
        spec = jupyter_server.add_kernelspec("python3", notebook_env(standin.url))
        nb["metadata"]["kernelspec"] = {"name": spec, "display_name": spec, "language": "python"}
        name = f"{front_end}-{tutorial.name}"
        jupyter_server.put_notebook(name, nb)
        page = open_notebook(front_end, name, create=False)
        run_all(page, front_end)

        codes = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]

        def all_counted() -> list[dict] | None:
            cells = page_cells(page)
            counted = len(cells) == len(nb["cells"]) and all(
                _COUNT.match(cells[i]["prompt"]) for i in codes
            )
            return cells if counted else None

        try:
            cells = poll("every code cell to show an execution count", all_counted,
                         RUN_ALL_TIMEOUT, page)  # fmt: skip
        finally:
            screenshot(page, f"run-all-{front_end}-{tutorial.stem}")

    counts = [int(_COUNT.match(cells[i]["prompt"]).group(1)) for i in codes]  # type: ignore[union-attr]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    for i in codes:
        tagged = RAISES in nb["cells"][i]["metadata"].get("tags", [])
        errors = cells[i]["errors"]
        if tagged:
            assert errors, f"cell {i} is tagged {RAISES} but showed no error"
        else:
            assert not errors, f"cell {i} (untagged) showed an error: {errors}"
