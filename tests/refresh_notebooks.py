"""Re-run the tutorials against a fresh stand-in and store their outputs in place.

    .venv/bin/python tests/refresh_notebooks.py [notebooks/01-quickstart.ipynb ...]

The stored outputs are what nbval compares with (tests/run), so refresh a notebook
after changing it or the extension's output, and read the diff before committing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from notebook_standin import notebook_env

from ollama_nb.testing import StandInServer

ROOT = Path(__file__).resolve().parent.parent


NBVAL_RAISES = "nbval-raises-exception"
NBCLIENT_RAISES = "raises-exception"  # nbclient's name for the same promise


def refresh(path: Path, env: dict[str, str]) -> None:
    nb = nbformat.read(path, as_version=4)
    raising = [c for c in nb.cells if NBVAL_RAISES in c.metadata.get("tags", [])]
    for cell in raising:
        cell.metadata.tags.append(NBCLIENT_RAISES)
    os.environ.update(env)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False).execute(
        cwd=str(path.parent)
    )
    for cell in raising:
        cell.metadata.tags.remove(NBCLIENT_RAISES)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in diffs
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
