"""Browser tests: a real JupyterLab 4 and Notebook 7 in headless Chromium (Playwright, sync API).

Mark every test here ``@pytest.mark.browser``. Run them with ``tests/run tests/browser``.

Fixtures
--------
``jupyter_server`` (session)
    One ``jupyter lab`` server for the whole session, run by this venv's python, serving both
    JupyterLab (``/lab``) and Notebook 7 (``/tree``, ``/notebooks``). Isolated: its own
    ``JUPYTER_CONFIG_DIR`` / ``JUPYTER_DATA_DIR`` / ``JUPYTER_RUNTIME_DIR`` / ``IPYTHONDIR`` and
    root dir (tmp dirs), the news pop-up disabled, token auth. Its log goes to
    ``artifacts/jupyter-server.log``. A :class:`JupyterServer` (``url``, ``token``, ``root``,
    ``api()``, ``kernel_of()``, ``wait_kernel_ready()``, ``add_kernelspec()``).
``browser`` (one Chromium for the session, handed to each test)
    Chromium from ``$OLLAMA_NB_CHROMIUM`` (set by tests/run; else ``chromium`` on PATH), launched
    once by Playwright with the flags this machine needs. Never ``playwright install``. When no
    chromium is available the fixture FAILS if ``$CI`` is set and SKIPS otherwise. During a
    browser test Playwright's loop is the thread's running loop: no ``asyncio.run()`` there.
``open_notebook`` (function)
    ``open_notebook(front_end, name=None, cells=None, *, kernel="python3", env=None,
    create=True) -> Page`` creates the notebook through the contents API, opens it in a new
    browser context (fresh storage) and returns the page once the kernel can take
    Shift+Enter; ``create=False`` re-opens the saved notebook ``name`` instead (e.g. after a
    kernel shutdown). At teardown it closes the page and shuts the notebook's kernel down;
    when the test failed it saves a screenshot and the browser console into ``artifacts/``.

Helpers to drive the page (``run_cell``, ``wait_cell_finished``, ``cell_output_text``,
``wait_cell_output``, ``screenshot``, selectors) are in ``browser_helpers``.

Kernels: which python, which environment
-----------------------------------------
``kernel="python3"`` is this venv's python (a kernelspec written with its absolute path into the
isolated data dir, so nothing on the machine can shadow it); ``kernel="k6"`` is the python of
``$OLLAMA_NB_K6_PYTHON`` (ipykernel 6.29.5; the test is skipped when it is not set).

A kernel inherits the server's environment (``os.environ`` when the session started it), plus,
per notebook, ``env``: ``open_notebook("lab", cells=[...], env={"OLLAMA_HOST": url})`` writes a
kernelspec ``ollama-nb-<n>`` whose ``env`` holds those variables, and the notebook names that
kernelspec, so its kernel starts with them already set. No setup cell is needed and the cell
indexes stay the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_helpers import ARTIFACTS, CODE_EDITOR, KERNEL_IDLE, poll, screenshot

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT = 60  # s until /api/status answers
PAGE_READY_TIMEOUT = 60  # s from opening a notebook until its kernel can take Shift+Enter
DEFAULT_TIMEOUT_MS = 30_000  # Playwright's default for every action and wait on a page
FRONT_ENDS = ("lab", "notebook")


def _is_ci() -> bool:
    value = os.environ.get("CI", "")
    return bool(value) and value.lower() not in ("0", "false", "no")


def _unavailable(reason: str) -> None:
    if _is_ci():
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kernelspec(python: str, display_name: str, env: dict[str, str] | None = None) -> dict:
    spec: dict[str, Any] = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True},
    }
    if env:
        spec["env"] = dict(env)
    return spec


class JupyterServer:
    """One ``jupyter lab`` process (JupyterLab 4 + Notebook 7) on 127.0.0.1, isolated in tmp."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"  # the server's root dir: notebooks are created here
        self.config_dir = base / "config"
        self.data_dir = base / "data"
        self.runtime_dir = base / "runtime"
        self.ipython_dir = base / "ipython"
        for d in (self.root, self.config_dir, self.data_dir, self.runtime_dir, self.ipython_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.token = "ollama-nb-browser-tests"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / "jupyter-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._spec_counter = itertools.count(1)
        self.kernel_pythons: dict[str, str] = {"python3": sys.executable}
        k6 = os.environ.get("OLLAMA_NB_K6_PYTHON", "")
        if k6 and os.access(k6, os.X_OK):
            self.kernel_pythons["k6"] = k6

    # -- set-up ------------------------------------------------------------------------------
    def _write_config(self) -> None:
        labconfig = self.config_dir / "labconfig"
        labconfig.mkdir(exist_ok=True)
        page_config = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
        (labconfig / "page_config.json").write_text(json.dumps(page_config))
        self._write_spec("python3", _kernelspec(sys.executable, "Python 3 (test venv)"))
        if "k6" in self.kernel_pythons:
            spec = _kernelspec(self.kernel_pythons["k6"], "Python 3 (ipykernel 6.29)")
            self._write_spec("k6", spec)

    def _write_spec(self, name: str, spec: dict) -> None:
        folder = self.data_dir / "kernels" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1))

    def add_kernelspec(self, kernel: str = "python3", env: dict[str, str] | None = None) -> str:
        """Write a new kernelspec running ``kernel``'s python with ``env`` added to its
        environment; returns its name (``ollama-nb-<n>``)."""
        if kernel not in self.kernel_pythons:
            raise ValueError(f"unknown kernel {kernel!r}; known: {sorted(self.kernel_pythons)}")
        name = f"ollama-nb-{next(self._spec_counter)}"
        self._write_spec(name, _kernelspec(self.kernel_pythons[kernel], f"{kernel} {name}", env))
        return name

    def start(self) -> None:
        self._write_config()
        ARTIFACTS.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.config_dir),
            JUPYTER_DATA_DIR=str(self.data_dir),
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            IPYTHONDIR=str(self.ipython_dir),
            JUPYTER_PLATFORM_DIRS="1",
            # in a venv jupyter_core puts the venv's dirs first: ours must win (kernelspecs)
            JUPYTER_PREFER_ENV_PATH="0",
            PYDEVD_DISABLE_FILE_VALIDATION="1",  # the kernel's debugger warns about this
        )
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--allow-root",
            "--no-browser",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                return bool(self.api("GET", "/api/status", timeout=2))
            except (OSError, urllib.error.URLError):
                return False

        try:
            poll("jupyter lab to answer /api/status", ready, SERVER_START_TIMEOUT)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        # the kernels must be the pythons we wrote, not a kernelspec found elsewhere
        specs = self.api("GET", "/api/kernelspecs")["kernelspecs"]
        for name, python in self.kernel_pythons.items():
            argv = specs.get(name, {}).get("spec", {}).get("argv", [])
            if argv[:1] != [python]:
                self.stop()
                raise RuntimeError(f"kernelspec {name!r} runs {argv[:1]}, not {python}")

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            for kernel in self.api("GET", "/api/kernels", timeout=5):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=10)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(["--- jupyter-server.log (tail) ---", *text[-lines:]])

    # -- REST API ------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """Call the server's REST API with the token; returns the decoded JSON (None if empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def put_notebook(self, name: str, nb: dict) -> None:
        """Create (or replace) notebook ``name`` in the root dir through the contents API."""
        body = {"type": "notebook", "format": "json", "content": nb}
        self.api("PUT", f"/api/contents/{urllib.parse.quote(name)}", body)

    def kernel_of(self, path: str) -> dict | None:
        """The kernel model (``id``, ``execution_state``, ``connections``...) of the session
        whose notebook is ``path``, or None while there is none."""
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == path and session.get("kernel"):
                kernel_id = session["kernel"]["id"]
                try:
                    return self.api("GET", f"/api/kernels/{kernel_id}")
                except urllib.error.HTTPError:
                    return None
        return None

    def wait_kernel_ready(self, path: str, timeout: float = PAGE_READY_TIMEOUT) -> dict:
        """Wait until the notebook's kernel has a browser connection and is idle; a Shift+Enter
        sent before that is silently dropped (KERNEL_FACTS)."""

        def ready() -> dict | None:
            kernel = self.kernel_of(path)
            connected = kernel is not None and kernel.get("connections", 0) > 0
            if connected and kernel.get("execution_state") == "idle":
                return kernel
            return None

        return poll(f"the kernel of {path} to be connected and idle", ready, timeout)

    def shutdown_sessions(self, paths: set[str]) -> None:
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") in paths:
                with contextlib.suppress(urllib.error.URLError, OSError):
                    self.api("DELETE", f"/api/sessions/{session['id']}", timeout=20)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of the chromium to drive; fails in CI / skips locally when there is none."""
    path = os.environ.get("OLLAMA_NB_CHROMIUM")
    if path is None:  # not run through tests/run
        path = shutil.which("chromium") or ""
    if not path:
        _unavailable(
            "chromium is not available (OLLAMA_NB_CHROMIUM is empty): tests/run installs "
            "Debian's chromium with `apt-get install chromium`, which needs root"
        )
    if not os.access(path, os.X_OK):
        _unavailable(f"chromium {path!r} is not an executable file")
    return path


@pytest.fixture(scope="session")
def _playwright_browser(chromium_executable: str) -> Iterator[tuple[Any, Any]]:
    """One headless Chromium for the session (Playwright sync API), and Playwright's loop."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is missing ({exc}): install '.[test]'")
    manager = sync_playwright()
    pw = manager.start()
    try:
        browser = pw.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
    except BaseException:
        manager.__exit__(None, None, None)
        raise
    # Between two sync calls Playwright leaves its event loop marked as running in this
    # thread (by design, see playwright/_impl/_greenlets.py). Left so, every later test of
    # the session would get "asyncio.run() cannot be called from a running event loop":
    # the function-scoped `browser` fixture marks it running only during a browser test.
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield browser, loop
    finally:
        asyncio._set_running_loop(loop)
        try:
            browser.close()
        finally:
            manager.__exit__(None, None, None)


@pytest.fixture
def browser(_playwright_browser: tuple[Any, Any]) -> Iterator[Any]:
    """The session's headless Chromium (a Playwright ``Browser``), for one test.

    While a browser test runs, Playwright's loop counts as the running event loop of the main
    thread, so ``asyncio.run()`` cannot be used in a browser test (use a thread for async
    code); the other tests of the session are not affected.
    """
    browser, loop = _playwright_browser
    asyncio._set_running_loop(loop)
    try:
        yield browser
    finally:
        asyncio._set_running_loop(None)


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One isolated ``jupyter lab`` server (Lab 4 + Notebook 7) for the session."""
    server = JupyterServer(tmp_path_factory.mktemp("jupyter"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _notebook_json(cells: list | None, kernelspec: str, display_name: str) -> dict:
    v4 = nbformat.v4
    new_cells = []
    for c in cells or [""]:
        new_cells.append(v4.new_code_cell(c) if isinstance(c, str) else nbformat.from_dict(c))
    nb = v4.new_notebook(
        cells=new_cells,
        metadata={
            "kernelspec": {"name": kernelspec, "display_name": display_name, "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(nb)
    return json.loads(nbformat.writes(nb))


@pytest.fixture
def open_notebook(
    request: pytest.FixtureRequest, browser: Any, jupyter_server: JupyterServer
) -> Iterator[Any]:
    """``open_notebook(front_end, name=None, cells=None, *, kernel="python3", env=None,
    create=True)``.

    front_end  "lab" (JupyterLab, /lab/workspaces/<fresh>/tree/NAME) or "notebook"
               (Notebook 7, /notebooks/NAME).
    name       file name in the server's root ("<test>-<n>.ipynb" when None).
    cells      sources of code cells (str), or nbformat cell dicts; one empty code cell when
               None.
    kernel     "python3" (this venv) or "k6" (ipykernel 6.29.5 venv).
    env        extra environment variables for this notebook's kernel.
    create     False: open the existing notebook ``name`` (its saved cells and kernelspec)
               instead of writing one; ``cells`` and ``env`` must then be None.

    Returns the Playwright ``Page`` after: the first cell editor is visible, the kernel has a
    connection and is idle (/api/kernels), and the page's execution indicator says idle.
    """
    server = jupyter_server
    contexts: list[Any] = []
    pages: list[Any] = []
    paths: set[str] = set()
    consoles: list[list[str]] = []
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:60]
    counter = itertools.count(1)

    def _open(
        front_end: str,
        name: str | None = None,
        cells: list | None = None,
        *,
        kernel: str = "python3",
        env: dict[str, str] | None = None,
        create: bool = True,
    ) -> Any:
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        if kernel == "k6" and "k6" not in server.kernel_pythons:
            _unavailable("OLLAMA_NB_K6_PYTHON is not set: run through tests/run")
        n = next(counter)
        if create:
            name = name or f"{stem}-{n}.ipynb"
            spec = server.add_kernelspec(kernel, env) if env else kernel
            server.put_notebook(name, _notebook_json(cells, spec, spec))
        elif name is None or cells is not None or env is not None:
            raise ValueError("create=False re-opens notebook `name` as saved: no cells, no env")
        paths.add(name)

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = context.new_page()
        pages.append(page)
        console: list[str] = []
        consoles.append(console)
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))

        quoted = urllib.parse.quote(name)
        if front_end == "lab":  # a fresh workspace: Lab restores no other test's documents
            url = f"{server.url}/lab/workspaces/{stem}-{n}/tree/{quoted}"
        else:
            url = f"{server.url}/notebooks/{quoted}"
        page.goto(f"{url}?token={server.token}", wait_until="domcontentloaded")
        timeout_ms = PAGE_READY_TIMEOUT * 1000
        page.locator(CODE_EDITOR).first.wait_for(state="visible", timeout=timeout_ms)
        server.wait_kernel_ready(name)
        page.locator(KERNEL_IDLE).first.wait_for(state="attached", timeout=timeout_ms)
        return page

    yield _open

    failed = any(
        getattr(request.node, f"rep_{when}", None) is not None
        and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        for i, (page, console) in enumerate(zip(pages, consoles, strict=True), 1):
            with contextlib.suppress(Exception):
                screenshot(page, f"{stem}-failure-{i}")
            with contextlib.suppress(OSError):
                (ARTIFACTS / f"{stem}-console-{i}.txt").write_text("\n".join(console) + "\n")
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    # the kernel goes with its session: later tests start from a clean server
    # (DELETE /api/sessions/ID answers once the kernel is shut down)
    with contextlib.suppress(OSError):
        server.shutdown_sessions(paths)
