"""pytest plugin: a stand-in server for the tutorials that nbval runs.

Loaded for every run (`-p notebook_standin` in pyproject). When nbval is on, it starts
the stand-in before any notebook kernel starts and points kernels at it through
`OLLAMA_HOST` / `OLLAMA_MODEL`, as `notebooks/open` does when no Ollama answers.
"""

from __future__ import annotations

import os

import pytest

from ollama_nb.testing import StandInServer

_server: StandInServer | None = None
_current_notebook: pytest.Collector | None = None

# What a notebook kernel needs to find the stand-in; the same in tests/refresh_notebooks.py.
MODEL = "stand-in"


def notebook_env(url: str) -> dict[str, str]:
    return {"OLLAMA_HOST": url, "OLLAMA_MODEL": MODEL}


def pytest_configure(config: pytest.Config) -> None:
    global _server
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return
    _server = StandInServer().start()
    os.environ.update(notebook_env(_server.url))  # nbval's kernels inherit this environment


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each notebook starts from a clean stand-in (no pulled or loaded models), as it does
    under tests/refresh_notebooks.py, so notebooks do not depend on each other's order."""
    global _current_notebook
    if _server is not None and item.parent is not _current_notebook:
        _current_notebook = item.parent
        _server.reset()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
