"""Check the tutorial command in a fresh clone, as a new user would run it.

    .venv/bin/python tests/browser/check_tutorial_open.py [--clone /tmp/fresh-open] [--port 8899]

(``--reuse`` keeps an existing clone and its venv, for a quicker re-run.)

1. ``git clone`` this repository (its committed state) into a fresh directory;
2. start ``notebooks/open --no-browser --port P --IdentityProvider.token=T`` there, in its own
   process group, with no ``$OLLAMA_HOST`` (no Ollama runs here): it must make its venv,
   start the stand-in and print a visible notice; its output goes to
   ``artifacts/tutorial-open.log``;
3. open ``/lab/tree/01-quickstart.ipynb`` in headless Chromium (Debian's, the fixtures'
   flags), wait for the kernel, then Shift+Enter through every cell top to bottom, each
   waited for, clicking Stop in the cell that invites it;
4. check: the only error is the deliberate ``no-such-model`` cell's
   ``OllamaModelNotFoundError``, the first output names the stand-in, the records show
   ``[stand-in]`` text; screenshots go to ``artifacts/tutorial-open-*.png``;
5. run every tutorial of the clone headless (nbclient) in the venv that ``notebooks/open``
   made, not the test venv, against the stand-in it started: every code cell runs, and only
   the cells tagged ``raises-exception`` may raise;
6. stop the server (SIGTERM to its process group, SIGKILL after 20 s) and check that no
   process of the clone is left.

Not a pytest test: it needs a fresh clone and a venv install (a minute or more). Exits 0 when
every check passed; prints one line per check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_helpers import (
    ARTIFACTS,
    REPO_ROOT,
    WIDGET_BUTTON,
    cell,
    cell_output_text,
    cell_prompt,
    poll,
    screenshot,
    wait_cell_finished,
)
from conftest import CHROMIUM_ARGS

TOKEN = "T"
NOTEBOOK = "01-quickstart.ipynb"
START_TIMEOUT = 900  # s: a fresh clone makes its venv first
STDERR = "[data-mime-type='application/vnd.jupyter.stderr']"
RECORD_ANSWER = ".ollama-nb-record .ollama-nb-answer"
STANDIN_NOTICE = "using the STAND-IN server"
STOP_CELL_MARK = "standin_tokens=120"  # the cell the tutorial asks to Stop
ERROR_CELL_MARK = "no-such-model"


class Checks:
    """Collects named results; prints each as it is made."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"[{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
        if not ok:
            self.failed.append(name)


def api(base: str, path: str, timeout: float = 5) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    return poll(what, check, timeout)  # no page: plain polling with a deadline


def clone(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True)


def start_open(target: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "OLLAMA_MODEL")}
    env.pop("VIRTUAL_ENV", None)
    cmd = [
        str(target / "notebooks" / "open"),
        "--no-browser",
        "--port",
        str(port),
        f"--IdentityProvider.token={TOKEN}",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=target,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )


def wait_server(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"notebooks/open exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            return bool(api(base, "/api/status", timeout=2))
        except (OSError, urllib.error.URLError):
            return False

    wait_until("JupyterLab to answer /api/status", up, START_TIMEOUT)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_open(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (JupyterLab shuts its kernels down, the script's trap
    stops the stand-in), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    with contextlib.suppress(TimeoutError):
        wait_until("the process group to end", group_gone, 20)


def leftovers(target: Path) -> list[str]:
    """Processes whose command line or working directory lies in the clone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(target) in cmdline or cwd.startswith(str(target)):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def active_index(page: Any) -> int:
    return page.evaluate(
        "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')]"
        ".findIndex((c) => c.classList.contains('jp-mod-active'))"
    )


def clear_all_outputs(page: Any) -> None:
    """Edit → Clear Outputs of All Cells: the tutorial is saved with its outputs, and what
    is checked must come from this run."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Edit").click()
    page.locator(".lm-Menu-itemLabel", has_text="Clear Outputs of All Cells").click()

    def cleared() -> bool:
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        return all(p.replace("\u00a0", " ").strip() == "[ ]:" for p in prompts)

    poll("every prompt to read [ ]:", cleared, 10, page)
    assert page.locator(".jp-Notebook .jp-OutputArea-output").count() == 0


def run_all_by_shift_enter(page: Any, checks: Checks) -> dict[int, str]:
    """Shift+Enter through every cell, waiting for each code cell; returns their outputs."""
    clear_all_outputs(page)
    count = page.locator(".jp-Notebook .jp-Cell").count()
    cell(page, 0).click()
    page.keyboard.press("Escape")  # command mode
    outputs: dict[int, str] = {}
    for index in range(count):
        if active_index(page) != index:  # a click in an output (Stop) selects that cell
            cell(page, index).locator(".jp-InputPrompt").first.click()
        poll(f"cell {index} to be active", lambda i=index: active_index(page) == i, 10, page)
        target = cell(page, index)
        is_code = "jp-CodeCell" in (target.get_attribute("class") or "")
        before = cell_prompt(page, index) if is_code else ""
        page.keyboard.press("Shift+Enter")
        if not is_code:
            continue
        poll(
            f"cell {index} to start", lambda i=index, b=before: cell_prompt(page, i) != b, 15, page
        )
        source = target.locator(".cm-content").inner_text()
        if STOP_CELL_MARK in source:  # the tutorial says: click Stop while it streams
            button = target.locator(WIDGET_BUTTON)
            button.wait_for(state="visible", timeout=20_000)
            poll("some streamed text", lambda t=target: "[stand-in]" in t.inner_text(), 10, page)
            button.click()
            checks("Stop clicked in the long-story cell", True)
        wait_cell_finished(page, index, timeout=60)
        target.scroll_into_view_if_needed()
        outputs[index] = cell_output_text(page, index)
    return outputs


def check_notebook(page: Any, outputs: dict[int, str], checks: Checks) -> None:
    sources = {i: cell(page, i).locator(".cm-content").inner_text() for i in sorted(outputs)}
    first = min(outputs)
    checks(
        "first output names the stand-in",
        "stand-in" in outputs[first],
        outputs[first].replace("\n", " | "),
    )
    for index, text in outputs.items():
        errors = cell(page, index).locator(STDERR)
        error_text = " | ".join(e.strip() for e in errors.all_inner_texts())
        if ERROR_CELL_MARK in sources[index]:
            checks(
                f"cell {index} (no-such-model) shows OllamaModelNotFoundError, one line",
                error_text.startswith("OllamaModelNotFoundError")
                and len(error_text.splitlines()) == 1,
                error_text,
            )
        else:
            checks(
                f"cell {index}: no error",
                not error_text and "Traceback" not in text,
                error_text or text.replace("\n", " | ")[:100],
            )
        if sources[index].startswith("%%ollama") and ERROR_CELL_MARK not in sources[index]:
            answer = cell(page, index).locator(RECORD_ANSWER)
            shown = answer.first.inner_text().strip() if answer.count() else ""
            status = text.splitlines()[-1] if text else ""
            checks(
                f"cell {index}: record shows [stand-in] text",
                shown.startswith("[stand-in]"),
                f"{shown[:50]!r}… / {status}",
            )
    # an execute_result reads "[N]:" then the value: compare the value
    values = {i: o.splitlines()[-1] if o else "" for i, o in outputs.items()}
    stop_cell = next(i for i in outputs if "_ollama.done_reason, len" in sources[i])
    checks(
        f"cell {stop_cell}: the stopped request is 'stopped'",
        values[stop_cell] == "('stopped', True)",
        values[stop_cell],
    )
    last = max(outputs)
    checks(
        f"cell {last}: the failed request is kept in _ollama",
        values[last] == "('OllamaModelNotFoundError', 'error')",
        values[last],
    )


# Runs in the clone's own venv: executes each tutorial as it is committed; one line each.
RUN_TUTORIALS = r"""
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": "notebooks"}}).execute()
    except CellExecutionError as exc:
        print(f"FAIL {path}: {str(exc).strip().splitlines()[-1][:200]}", flush=True)
        continue
    except Exception as exc:
        print(f"FAIL {path}: {type(exc).__name__}: {exc}"[:300], flush=True)
        continue
    ran = sum(1 for c in nb.cells if c.cell_type == "code" and c.get("execution_count"))
    print(f"ok {path} ({ran} code cells ran)", flush=True)
"""


def run_every_tutorial(target: Path, log: str, checks: Checks) -> None:
    """Every tutorial, headless, in the environment `notebooks/open` made (it must hold
    what the tutorials import), against the stand-in it started."""
    url = next(
        (w.rstrip(".") for line in log.splitlines() if STANDIN_NOTICE in line
         for w in line.split() if w.startswith("http://")),
        None,
    )  # fmt: skip
    if url is None:
        checks("the stand-in's address is in the notice", False)
        return
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update({"OLLAMA_HOST": url, "OLLAMA_MODEL": "stand-in"})
    tutorials = sorted(str(p.relative_to(target)) for p in (target / "notebooks").glob("*.ipynb"))
    done = subprocess.run(
        [str(target / ".venv" / "bin" / "python"), "-c", RUN_TUTORIALS, *tutorials],
        cwd=target,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = done.stdout.splitlines()
    for path in tutorials:
        line = next((x for x in lines if x.split()[1:2] == [path]), "")
        checks(f"{path} runs in notebooks/open's venv", line.startswith("ok "), line or
               done.stderr.strip()[-300:])  # fmt: skip


def browse(base: str, checks: Checks) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("OLLAMA_NB_CHROMIUM") or shutil.which("chromium") or ""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={TOKEN}", wait_until="domcontentloaded")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)

            def kernel_ready() -> bool:
                return any(
                    k.get("connections", 0) > 0 and k.get("execution_state") == "idle"
                    for k in api(base, "/api/kernels")
                )

            poll("the kernel to be connected and idle", kernel_ready, 60, page)
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                state="attached", timeout=60_000
            )
            outputs = run_all_by_shift_enter(page, checks)
            check_notebook(page, outputs, checks)
            news = page.get_by_role("button", name="No", exact=True)  # first-run pop-up
            if news.count():
                news.first.click()
            for index in (1, 11, max(outputs)):
                cell(page, index).scroll_into_view_if_needed()
                print(f"screenshot: {screenshot(page, f'tutorial-open-cell{index}')}")
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clone", type=Path, default=Path("/tmp/fresh-open"))
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument(
        "--reuse", action="store_true", help="re-use the clone (and its venv) if it exists"
    )
    args = parser.parse_args()
    target: Path = args.clone.resolve()
    base = f"http://127.0.0.1:{args.port}"
    checks = Checks()
    if not port_free(args.port):
        print(f"port {args.port} is in use: pick another with --port")
        return 2
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "tutorial-open.log"

    started = time.monotonic()
    if args.reuse and (target / ".venv").exists():
        print(f"re-using the clone {target}")
    else:
        clone(target)
        print(f"cloned {REPO_ROOT} into {target}")
    proc = start_open(target, args.port, log_path)
    try:
        wait_server(proc, base, log_path)
        print(f"notebooks/open served JupyterLab after {time.monotonic() - started:.0f} s")
        log = log_path.read_text(errors="replace")
        notice = [line for line in log.splitlines() if line.startswith("[notebooks/open]")]
        print("notebooks/open said:\n  " + "\n  ".join(notice))
        checks("the stand-in notice is printed", STANDIN_NOTICE in log)
        browse(base, checks)
        run_every_tutorial(target, log, checks)
    except Exception as exc:
        checks("the tutorial ran", False, f"{type(exc).__name__}: {exc}")
    finally:
        stop_open(proc)
        left = leftovers(target)
        for line in left:  # ours: they run from the clone
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
        checks("no process left after stopping", not left, "; ".join(left))
        checks(f"port {args.port} is free again", port_free(args.port))
    print(f"{'FAILED: ' + ', '.join(checks.failed) if checks.failed else 'all checks passed'}")
    print(f"({time.monotonic() - started:.0f} s; log: {log_path})")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
