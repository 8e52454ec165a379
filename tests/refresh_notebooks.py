"""Re-run the tutorials against a fresh stand-in and store their outputs in place.

    .venv/bin/python tests/refresh_notebooks.py [notebooks/01-quickstart.ipynb ...]

The stored outputs are what nbval compares with (tests/run), so refresh a notebook
after changing it or the extension's output, and read the diff before committing.

What is stored is what GitHub, nbviewer and nbval can read without a widget front end:
the records, never widget state (`metadata.widgets`) nor an output that is only a widget
reference (a live view that had not been replaced yet). A cell that fails on purpose
carries the tag `raises-exception` (read by nbclient, nbval, JupyterLab and Notebook 7);
any other failing cell stops the refresh.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from notebook_standin import notebook_env

from ollama_nb.testing import StandInServer

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def is_widget_only(output: dict[str, Any]) -> bool:
    """An output that shows nothing without widget state: a widget view, with at most the
    widget's repr as `text/plain`; or a display with no data at all (a live view that its
    record replaced, emptied in place)."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return False
    data = output.get("data", {})
    return not data or (WIDGET_VIEW in data and set(data) <= {WIDGET_VIEW, "text/plain"})


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop widget state, widget-only outputs and execution timestamps (noise in diffs)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not is_widget_only(o)]


def refresh(path: Path, env: dict[str, str]) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.update(env)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", allow_errors=False, store_widget_state=False
    )
    client.execute(cwd=str(path.parent))
    clean(nb)
    nbformat.write(nb, path)
    print(f"refreshed {path.relative_to(ROOT)}")


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        # A fresh stand-in per notebook: its state (pulled models, /api/ps) starts clean,
        # as it does under nbval.
        with StandInServer() as server:
            refresh(path, notebook_env(server.url))


if __name__ == "__main__":
    main(sys.argv[1:])
