"""`$OLLAMA_API_KEY` is sent and never shown; prompts and answers never reach the disk.

The key must reach the server as a bearer token, and appear nowhere a user, a shared
notebook or a screen recording could see it: no IOPub message of any cell (tables,
versions, errors of every kind, reprs, the static record, widget state), no saved
notebook. And the extension writes nothing of a conversation to disk: a kernel whose
HOME, TMPDIR and working directory are fresh temporary directories holds, afterwards,
no file with the prompt or the answer, other than IPython's own input history.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from kernel_driver import Cell, KernelDriver
from nbclient import NotebookClient

from ollama_nb.testing import StandInServer

SECRET = "sk-test-SECRET123"
FRAGMENT = "SECRET123"  # a key shown cut short is still shown
PROMPT_MARK = "prompt-marker-7f3a9c"
ANSWER_MARK = "answer-marker-4be21d"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: StandInServer, **env: str) -> KernelDriver:
    env = {"OLLAMA_HOST": server.url, "OLLAMA_MODEL": "", "OLLAMA_API_KEY": SECRET, **env}
    kernel = KernelDriver(sys.executable, env=env)
    kernel.ok("%load_ext ollama_nb")
    return kernel


@pytest.fixture(scope="module")
def keyed_kernel(standin_server: StandInServer) -> Iterator[KernelDriver]:
    kernel = start(standin_server)
    yield kernel
    kernel.close()


def shown(cells: list[Cell]) -> str:
    """Everything sent to front ends since the first of `cells`: outputs, errors, widget
    state, as JSON (not the echo of the cells' own code)."""
    since = min(cell.sent_at for cell in cells)
    return "\n".join(
        json.dumps(m.raw["content"], ensure_ascii=False)
        for m in cells[0].driver.messages
        # execute_input echoes the code a test typed (which may hold the key on purpose)
        if m.channel == "iopub" and m.at >= since and m.type != "execute_input"
    )


def test_key_is_sent_as_a_bearer_token_and_never_shown(
    keyed_kernel: KernelDriver, server: StandInServer
) -> None:
    kernel = keyed_kernel
    server.configure(api_key=SECRET, reply="Authorized answer.")
    ok = kernel.run("%%ollama stand-in\nHello.")
    assert ok.status == "ok", ok.error_text()
    assert server.last.headers["authorization"] == f"Bearer {SECRET}"

    config = kernel.ok("%ollama config")
    assert "set (not shown)" in shown([config])  # the key is there, and says so
    cells = [ok, config, kernel.ok("%ollama version"), kernel.ok("%ollama models")]
    cells.append(kernel.ok("print(repr(_ollama)); print(vars(_ollama)); _ollama"))

    # Errors of every kind, each followed by what a user would inspect.
    server.configure(api_key="some-other-key")
    unauthorized = kernel.run("%%ollama stand-in\nHello.")
    assert unauthorized.ename == "OllamaResponseError" and "HTTP 401" in shown([unauthorized])
    cells.append(unauthorized)
    server.configure(api_key=SECRET, stall_after=1)
    cells.append(kernel.run("%%ollama stand-in --read-timeout 0.3\nHello."))
    assert cells[-1].ename == "OllamaTimeoutError"
    cells.append(kernel.run(f"%%ollama stand-in --host 127.0.0.1:{closed_port()} --retries 0\nHi."))
    assert cells[-1].ename == "OllamaConnectionError"
    cells.append(kernel.run("%%ollama no-such-model\nHello."))
    assert cells[-1].ename == "OllamaModelNotFoundError"
    cells.append(
        kernel.ok(
            "print(repr(_ollama)); print(vars(_ollama))\n"
            "print(str(_ollama.error)); print(repr(_ollama.error)); print(vars(_ollama.error))\n"
            "_ollama"
        )
    )
    cells.append(kernel.ok("%ollama stats"))

    everything = shown(cells)
    assert "OllamaModelNotFoundError" in everything and "Authorized answer." in everything
    assert FRAGMENT not in everything


def test_saved_notebook_holds_no_key(
    standin_server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin_server.reset()
    standin_server.configure(api_key=SECRET)
    monkeypatch.setenv("OLLAMA_HOST", standin_server.url)  # the kernel inherits these
    monkeypatch.setenv("OLLAMA_API_KEY", SECRET)
    monkeypatch.setenv("OLLAMA_MODEL", "stand-in")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(source)
        for source in [
            "%load_ext ollama_nb",
            "%ollama config",
            "%ollama version",
            "%%ollama\nHello.",
            "_ollama",
            "%%ollama no-such-model\nHello.",
            "print(repr(_ollama.error), vars(_ollama))",
            "%%ollama --read-timeout 0.3 -o standin_stall_after=1\nHello.",
            "%ollama stats",
        ]
    ]
    try:
        NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute(
            cwd=str(tmp_path)
        )
    finally:
        standin_server.reset()
    saved = tmp_path / "run.ipynb"
    nbformat.write(nb, saved)
    text = saved.read_text()
    # The run did what it should: authorized answers, an error, a timeout, all saved.
    assert "stand-in · stop ·" in text and "OllamaModelNotFoundError" in text
    assert "read timeout" in text and "set (not shown)" in text
    assert FRAGMENT not in text


def files_with(root: Path, marks: list[str]) -> dict[str, list[str]]:
    """Files under `root` (relative path) containing any of `marks`, and which."""
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = [m for m in marks if m.encode() in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def is_ipython_history(relative: str) -> bool:
    path = Path(relative)
    return ".ipython" in path.parts and path.name.startswith("history.sqlite")


def test_nothing_of_a_conversation_is_written_to_disk(
    standin_server: StandInServer, tmp_path: Path
) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    standin_server.reset()
    standin_server.configure(reply=f"The answer is {ANSWER_MARK}.")
    kernel = start(standin_server, HOME=str(home), TMPDIR=str(tmp))
    try:
        cwd = Path(kernel.value("__import__('os').getcwd()"))
        for line in ("stand-in", "stand-in --chat", "stand-in --out kept"):
            cell = kernel.run(f"%%ollama {line}\nSay {PROMPT_MARK}.")
            assert cell.status == "ok", cell.error_text()
        assert kernel.value("_ollama.text") == f"The answer is {ANSWER_MARK}."
        kernel.ok("%ollama history")
        kernel.ok("%ollama stats")
        # A clean shutdown, so that anything written at exit is written.
        kernel.kc.stop_channels()
        kernel.km.shutdown_kernel(now=False)
        marks = [PROMPT_MARK, ANSWER_MARK, FRAGMENT]
        found = {
            f"{name}/{path}": hits
            for name, root in (("HOME", home), ("TMPDIR", tmp), ("cwd", cwd))
            for path, hits in files_with(root, marks).items()
        }
    finally:
        kernel.close()
        standin_server.reset()
    ipython_own = {path: hits for path, hits in found.items() if is_ipython_history(path)}
    print(
        f"\nIPython's own history holds the cell inputs (not the extension's doing): {ipython_own}"
    )
    assert {path: hits for path, hits in found.items() if path not in ipython_own} == {}
    # IPython records inputs, never outputs (db_log_output is off): no answer, no key.
    assert all(hits == [PROMPT_MARK] for hits in ipython_own.values()), ipython_own


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("sk-SECRET123\r\nX-Injected: 1", "a line break"),
        ("sk-SECRET123\nmore", "a line break"),
        ("sk-SECRET123-clé", "a non-ASCII character"),
        ("sk-SECRET123\x1b[2J", "a control character"),
    ],
)
def test_an_invalid_key_is_one_line_and_nothing_is_sent(
    keyed_kernel: KernelDriver, server: StandInServer, key: str, what: str
) -> None:
    kernel = keyed_kernel
    kernel.ok(f"import os; os.environ['OLLAMA_API_KEY'] = {key!r}")
    try:
        cells = [kernel.run("%%ollama stand-in\nHello.")]
        for command in ("models", "ps", "version"):
            cells.append(kernel.run(f"%ollama {command}"))
        cells.append(kernel.run("%%ollama\nHello."))  # the model lookup
        for cell in cells:
            assert cell.ename == "OllamaError", cell.error_text()
            [line] = cell.error()["traceback"]
            assert line.startswith("OllamaError: $OLLAMA_API_KEY is not a valid key"), line
            assert what in line and "nothing was sent" in line
        cells.append(kernel.ok("%ollama config"))
        assert server.requests == []
        assert FRAGMENT not in shown(cells)
    finally:
        kernel.ok(f"os.environ['OLLAMA_API_KEY'] = {SECRET!r}")


def test_a_password_in_the_host_is_sent_as_basic_auth_and_never_shown(
    keyed_kernel: KernelDriver, server: StandInServer
) -> None:
    import base64

    kernel = keyed_kernel
    server.configure(reply="Behind basic auth.")
    host = server.url.replace("http://", "http://me:pw-SECRET123@")
    cells = [kernel.run(f"%%ollama stand-in --host {host}\nHello.")]
    assert cells[0].status == "ok", cells[0].error_text()
    sent = server.last.headers["authorization"]
    assert sent == "Basic " + base64.b64encode(b"me:pw-SECRET123").decode()
    cells.append(kernel.ok("print(_ollama.host, repr(_ollama), vars(_ollama))"))
    assert "me:***@" in shown(cells[-1:])
    cells.append(kernel.ok(f"%config OllamaMagics.host = {host!r}"))
    try:
        cells.append(kernel.ok("%ollama config"))
        cells.append(kernel.ok("%ollama version"))
        server.configure(first_chunk_delay=5)
        cells.append(kernel.run("%%ollama stand-in --read-timeout 0.3\nHello."))
        assert cells[-1].ename == "OllamaTimeoutError"
        cells.append(kernel.run("%%ollama no-such-model\nHello."))
        cells.append(kernel.run(f"%%ollama stand-in --host {host}:99999\nHello."))
        assert cells[-1].status == "error"
    finally:
        cells.append(kernel.ok("%config OllamaMagics.host = None"))
    everything = shown(cells)
    assert "me:***@" in everything and FRAGMENT not in everything
