"""pytest plugin: the Ollama server for the tutorials that nbval runs.

Loaded for every run (`-p notebook_standin` in pyproject). When nbval is on:

- by default it starts the stand-in before any notebook kernel starts and points kernels
  at it through `OLLAMA_HOST` / `OLLAMA_MODEL`, as `notebooks/open` does when no Ollama
  answers; nbval compares the outputs strictly (`--nbval`).
- with `OLLAMA_NB_REAL_HOST` set (and `OLLAMA_NB_REAL_MODEL`, else the server's first
  completion model), kernels use that real server instead, and nbval switches to its
  `--nbval-lax` mode: every cell runs, a cell fails only on an error it is not tagged
  `raises-exception` for, and texts are not compared (no model writes the stand-in's
  words). `OLLAMA_THINKING_MODEL` is set to the server's first thinking model. Cells a
  real server cannot run are skipped with the reason: a pull (it downloads from the
  registry; `OLLAMA_NB_REAL_PULL=1` runs it), and, when the server has no thinking
  model, the thinking part of a tutorial (that cell and the rest of its notebook).
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import pytest

from ollama_nb.testing import StandInServer

_server: StandInServer | None = None
_current_notebook: pytest.Collector | None = None
_real_thinking_model: str | None = None

# What a notebook kernel needs to find the stand-in; the same in tests/refresh_notebooks.py.
MODEL = "stand-in"
REAL_HOST_VARIABLE = "OLLAMA_NB_REAL_HOST"


def notebook_env(url: str) -> dict[str, str]:
    return {"OLLAMA_HOST": url, "OLLAMA_MODEL": MODEL}


def _real_env(host: str) -> tuple[dict[str, str], str | None]:
    """Environment for kernels that talk to a real server, and its thinking model."""
    try:
        with httpx.Client(base_url=_base_url(host), timeout=30) as client:
            names = [m["name"] for m in client.get("/api/tags").json()["models"]]
            capabilities: dict[str, list[str]] = {}
            for name in names:
                shown = client.post("/api/show", json={"model": name})
                capabilities[name] = shown.json().get("capabilities") or []
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise pytest.UsageError(f"{REAL_HOST_VARIABLE}={host}: no Ollama answers ({exc})") from exc
    model = os.environ.get("OLLAMA_NB_REAL_MODEL") or next(
        (n for n, caps in capabilities.items() if "completion" in caps), ""
    )
    if not model:
        raise pytest.UsageError(f"{REAL_HOST_VARIABLE}={host}: set OLLAMA_NB_REAL_MODEL")
    thinking = next((n for n, caps in capabilities.items() if "thinking" in caps), None)
    env = {"OLLAMA_HOST": host, "OLLAMA_MODEL": model}
    if thinking is not None:
        env["OLLAMA_THINKING_MODEL"] = thinking
    return env, thinking


def _base_url(host: str) -> str:
    host = host.strip().strip("\"'")
    if "://" in host:
        return host.rstrip("/")
    return f"http://{host}" if ":" in host.split("/", 1)[0] else f"http://{host}:11434"


def pytest_configure(config: pytest.Config) -> None:
    global _server, _real_thinking_model
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return
    real_host = os.environ.get(REAL_HOST_VARIABLE, "").strip()
    if real_host:
        # Run every cell, fail on unexpected errors only: nbval's lax mode.
        config.option.nbval = False
        config.option.nbval_lax = True
        env, _real_thinking_model = _real_env(real_host)
        os.environ.update(env)  # nbval's kernels inherit this environment
        return
    _server = StandInServer().start()
    os.environ.update(notebook_env(_server.url))


_PULL = re.compile(r"^%ollama pull ", re.MULTILINE)
_THINKING = re.compile(r"\$thinking_model\b")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With a real server: skip, with the reason, the cells it cannot run."""
    if not os.environ.get(REAL_HOST_VARIABLE, "").strip():
        return
    rest_skipped: dict[Any, str] = {}  # notebook -> why its remaining cells are skipped
    for item in items:
        cell = getattr(item, "cell", None)  # nbval's items carry their notebook cell
        if cell is None:
            continue
        source = str(cell.source)
        reason = rest_skipped.get(item.parent)
        if reason is None and _real_thinking_model is None and _THINKING.search(source):
            reason = "the server has no thinking model (this cell and the rest of the notebook)"
            rest_skipped[item.parent] = reason
        if reason is None and _PULL.search(source) and os.environ.get("OLLAMA_NB_REAL_PULL") != "1":
            reason = "pulls from the model registry: set OLLAMA_NB_REAL_PULL=1 to run it"
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


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
