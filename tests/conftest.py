"""Shared parts: one stand-in server and one kernel per environment for the whole run.

Sharing keeps the suite fast; tests stay independent because each resets the stand-in's
records and knobs, and passes every setting it depends on in its own cell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from kernel_driver import KernelDriver

from ollama_nb.testing import StandInServer

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandInServer]:
    with StandInServer() as server:
        yield server


@pytest.fixture
def server(standin_server: StandInServer) -> StandInServer:
    standin_server.reset()
    return standin_server


def _start_kernel(python: str, server: StandInServer) -> KernelDriver:
    kernel = KernelDriver(python, env={"OLLAMA_HOST": server.url, "OLLAMA_MODEL": ""})
    kernel.ok("%load_ext ollama_nb")
    return kernel


@pytest.fixture(scope="session")
def kernel_74(standin_server: StandInServer) -> Iterator[KernelDriver]:
    driver = _start_kernel(sys.executable, standin_server)
    yield driver
    driver.close()


@pytest.fixture
def kernel(kernel_74: KernelDriver) -> Iterator[KernelDriver]:
    """ipykernel 7.4 from the test environment, with the extension loaded; left idle."""
    yield kernel_74
    kernel_74.settle()


@pytest.fixture(scope="session")
def kernel_629(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """ipykernel 6.29 from the second environment that tests/run makes."""
    python = os.environ.get("OLLAMA_NB_K6_PYTHON", "")
    if not python or not os.path.exists(python):
        message = "no ipykernel 6.29 environment (tests/run makes it: OLLAMA_NB_K6_PYTHON)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    driver = _start_kernel(python, standin_server)
    yield driver
    driver.close()


@pytest.fixture
def k6_kernel(kernel_629: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_629
    kernel_629.settle()


@pytest.fixture(scope="session")
def kernel_colab(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """The Colab-style stack (Python 3.11, ipykernel 6.17.1, IPython 7.34.0, ipywidgets
    7.7.1, the project installed into it) that tests/run makes."""
    python = os.environ.get("OLLAMA_NB_COLAB_PYTHON", "")
    if not python or not os.path.exists(python):
        message = "no Colab-style environment (tests/run makes it: OLLAMA_NB_COLAB_PYTHON)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    driver = _start_kernel(python, standin_server)
    yield driver
    driver.close()


@pytest.fixture
def colab_kernel(kernel_colab: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_colab
    kernel_colab.settle()


@pytest.fixture(scope="session")
def kernel_py310(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """Python 3.10 with what pip resolves there (ipykernel 6.31, IPython 8), from tests/run."""
    python = os.environ.get("OLLAMA_NB_PY310_PYTHON")
    if not python or not os.path.exists(python):
        message = "no Python 3.10 environment (tests/run makes it: OLLAMA_NB_PY310_PYTHON)"
        if IN_CI and python is None:  # not run by tests/run (which says when none exists)
            pytest.fail(message)
        pytest.skip(message)
    driver = _start_kernel(python, standin_server)
    yield driver
    driver.close()


@pytest.fixture
def py310_kernel(kernel_py310: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_py310
    kernel_py310.settle()
