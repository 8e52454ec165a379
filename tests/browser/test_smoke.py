"""Smoke tests of the browser test set-up: a real JupyterLab 4 and Notebook 7 in Chromium."""

import os
import sys

import pytest
from browser_helpers import (
    WIDGET_BUTTON,
    cell_output_text,
    run_cell,
    screenshot,
    wait_cell_finished,
    wait_cell_output,
)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("front_end", ["lab", "notebook"])
def test_print_runs(open_notebook, front_end):
    page = open_notebook(front_end)
    run_cell(page, "print(6 * 7)", 0)
    assert wait_cell_finished(page, 0, timeout=30) >= 1
    wait_cell_output(page, 0, "42", timeout=10)
    assert cell_output_text(page, 0) == "42"
    screenshot(page, f"smoke-{front_end}-print")


@pytest.mark.parametrize("front_end", ["lab", "notebook"])
def test_widget_button_renders(open_notebook, front_end):
    page = open_notebook(front_end)
    run_cell(page, 'import ipywidgets\nipywidgets.Button(description="Stop")', 0)
    wait_cell_finished(page, 0, timeout=30)
    button = page.locator(WIDGET_BUTTON)
    button.first.wait_for(state="visible", timeout=20_000)
    assert button.count() == 1
    assert button.first.inner_text().strip() == "Stop"
    screenshot(page, f"smoke-{front_end}-widget")


@pytest.mark.parametrize("kernel", ["python3", "k6"])
def test_kernel_python_and_env(open_notebook, kernel):
    """kernel= picks the venv's python; env= reaches the kernel's environment."""
    page = open_notebook("lab", kernel=kernel, env={"OLLAMA_HOST": "http://127.0.0.1:9"})
    code = (
        "import os, sys, ipykernel\n"
        "print(sys.executable, ipykernel.__version__, os.environ['OLLAMA_HOST'])"
    )
    run_cell(page, code, 0)
    wait_cell_finished(page, 0, timeout=30)
    exe, version, host = wait_cell_output(page, 0, "http://127.0.0.1:9", timeout=10).split()
    if kernel == "k6":
        assert (exe, version) == (os.environ["OLLAMA_NB_K6_PYTHON"], "6.29.5")
    else:
        assert exe == sys.executable
    assert host == "http://127.0.0.1:9"
