"""Shared parts: one stand-in server and one kernel per environment for the whole run.

Sharing keeps the suite fast; tests stay independent because each resets the stand-in's
records and knobs, and passes every setting it depends on in its own cell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pexpect
import pytest
from engine_server import MODEL, EngineServer, forward_mode
from engine_server import engine as engine  # the real engine, once per run (test_engine)
from kernel_driver import KernelDriver
from support import spawn_ipython

from ollama_nb.testing import StandInServer

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def standin_server(request: pytest.FixtureRequest) -> Iterator[StandInServer]:
    """The shared stand-in; in forward mode (`tests/run --forward`) its plain answers come
    from the real engine (llama.cpp), with real token timing."""
    forward: dict[str, str] = {}
    if forward_mode():
        real: EngineServer = request.getfixturevalue("engine")
        forward = {"forward_to": real.url, "forward_model": MODEL}
    with StandInServer(**forward) as server:
        yield server
    if forward:
        _forwarded.append(real.log().count("POST /v1/chat/completions"))


_forwarded: list[int] = []  # forward mode: requests the engine answered


def pytest_configure(config: pytest.Config) -> None:
    if forward_mode() and not os.environ.get("OLLAMA_NB_ENGINE_PYTHON"):
        why = os.environ.get("OLLAMA_NB_ENGINE_ERROR") or "OLLAMA_NB_ENGINE_PYTHON is not set"
        raise pytest.UsageError(f"forward mode needs the real engine (llama.cpp): {why}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _forwarded:
        terminalreporter.write_line(
            f"forward mode: the real engine (llama.cpp) answered {sum(_forwarded)} requests"
            " for the stand-in"
        )


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


def _environment_kernel(
    variable: str, what: str, server: StandInServer, *, may_be_absent: bool = False
) -> Iterator[KernelDriver]:
    """A kernel from the python that tests/run names in `variable`; without one, the test
    is skipped (failed under CI, where tests/run always makes it)."""
    python = os.environ.get(variable)
    if not python or not os.path.exists(python):
        message = f"no {what} environment (tests/run makes it: {variable})"
        # may_be_absent: tests/run sets the variable empty, and says so, where it cannot
        # make the environment (no such interpreter); only an unset variable then fails.
        if IN_CI and (python is None or not may_be_absent):
            pytest.fail(message)
        pytest.skip(message)
    driver = _start_kernel(python, server)
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def kernel_629(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """ipykernel 6.29 from the second environment that tests/run makes."""
    yield from _environment_kernel("OLLAMA_NB_K6_PYTHON", "ipykernel 6.29", standin_server)


@pytest.fixture
def k6_kernel(kernel_629: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_629
    kernel_629.settle()


@pytest.fixture(scope="session")
def kernel_colab(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """The Colab-style stack (Python 3.11, ipykernel 6.17.1, IPython 7.34.0, ipywidgets
    7.7.1, the project installed into it) that tests/run makes."""
    yield from _environment_kernel("OLLAMA_NB_COLAB_PYTHON", "Colab-style", standin_server)


@pytest.fixture
def colab_kernel(kernel_colab: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_colab
    kernel_colab.settle()


@pytest.fixture(scope="session")
def kernel_py310(standin_server: StandInServer) -> Iterator[KernelDriver]:
    """Python 3.10 with what pip resolves there (ipykernel 6.31, IPython 8), from tests/run."""
    yield from _environment_kernel(
        "OLLAMA_NB_PY310_PYTHON", "Python 3.10", standin_server, may_be_absent=True
    )


@pytest.fixture
def py310_kernel(kernel_py310: KernelDriver) -> Iterator[KernelDriver]:
    yield kernel_py310
    kernel_py310.settle()


@pytest.fixture
def ipython(server: StandInServer) -> Iterator[pexpect.spawn]:
    """Terminal IPython in a pseudo-terminal, with the extension loaded."""
    child = spawn_ipython(server)
    child.sendline("%load_ext ollama_nb")
    child.expect(r"In \[2\]: ")
    yield child
    if child.isalive():  # not when a failing test made it print its stacks (and abort)
        child.sendline("exit")
        child.expect(pexpect.EOF)
