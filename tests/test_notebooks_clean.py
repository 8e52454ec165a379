"""The committed tutorials hold the records only, and say which errors are on purpose.

GitHub and nbviewer show a notebook without a widget front end: widget state
(`metadata.widgets`) is dead weight there, and an output that is only a widget reference
shows nothing. tests/refresh_notebooks.py stores neither; this checks the files as they
are in the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from refresh_notebooks import clean, is_widget_only

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# JupyterLab, Notebook 7, nbclient and nbval 0.11 all read this one tag (nbval warns about
# "conflicting" tags when a cell also has nbval-raises-exception, its own name for it).
RAISES = "raises-exception"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def code_cells(nb: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def test_there_are_tutorials() -> None:
    assert len(TUTORIALS) >= 4, TUTORIALS


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_no_widget_state_nor_widget_outputs(path: Path) -> None:
    nb = load(path)
    assert "widgets" not in nb["metadata"], f"{path.name} carries metadata.widgets"
    for i, c in code_cells(nb):
        for output in c.get("outputs", []):
            assert WIDGET_VIEW not in output.get("data", {}), f"{path.name} cell {i}: {output}"
            if output["output_type"] == "display_data":  # an emptied live view: nothing
                assert output["data"], f"{path.name} cell {i}: an empty display"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_errors_only_where_tagged(path: Path) -> None:
    """A stored error is a deliberate one (tagged, and the Markdown above says so), and a
    tagged cell shows its error."""
    nb = load(path)
    for i, c in code_cells(nb):
        tags = set(c["metadata"].get("tags", []))
        outputs = c.get("outputs", [])
        failed = any(o["output_type"] == "error" for o in outputs) or any(
            o.get("name") == "stderr" and "Error" in "".join(o.get("text", "")) for o in outputs
        )
        if RAISES in tags:
            assert failed, f"{path.name} cell {i} is tagged to fail but its output shows no error"
            above = "".join(nb["cells"][i - 1]["source"])
            assert nb["cells"][i - 1]["cell_type"] == "markdown", f"{path.name} cell {i}"
            assert "fails on purpose" in above, f"{path.name} cell {i}: say so above it"
        else:
            assert not failed, f"{path.name} cell {i} shows an error but is not tagged"


def test_clean_drops_widget_state_and_widget_only_outputs() -> None:
    import nbformat

    record = {"text/plain": "answer", "text/html": "<p>answer</p>"}
    view = {WIDGET_VIEW: {"model_id": "x", "version_major": 2, "version_minor": 0}}
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    cell = nbformat.v4.new_code_cell("%%ollama")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data=view),
        nbformat.v4.new_output("display_data", data={**view, "text/plain": "HBox()"}),
        nbformat.v4.new_output("display_data", data={}),
        nbformat.v4.new_output("display_data", data=record),
    ]
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    nb.cells.append(cell)
    assert all(is_widget_only(o) for o in cell.outputs[:3])
    clean(nb)
    assert "widgets" not in nb.metadata and "execution" not in cell.metadata
    assert [o["data"] for o in cell.outputs] == [record]
