"""`--code` / `code=True` in a real kernel: the execute_reply's `set_next_input` payload
(what JupyterLab and Notebook 7 turn into a new cell below), `_ollama.code`, the record's
line, the instruction sent, and headless runs (nbclient, nbval), against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pexpect
import pytest
from kernel_driver import Cell, KernelDriver
from support import run_cell
from test_composition import SANITIZE, run_headless

from ollama_nb._code import CODE_INSTRUCTION
from ollama_nb._fix import FIX_INSTRUCTION
from ollama_nb.testing import StandInServer

CODE = 'import pandas as pd\n\ndf = pd.read_csv("data.csv")\nprint(df.head())'
ANSWER = (
    "Install pandas first:\n\n```bash\npip install pandas\n```\n\n"
    f"Then read the file:\n\n```python\n{CODE}\n```\n\nThat prints the first rows.\n"
)
BELOW = "code: 4 lines put in a new cell below"


def next_inputs(cell: Cell) -> list[dict[str, Any]]:
    """The `set_next_input` payloads of the cell's execute_reply."""
    assert cell.reply is not None
    payload = cell.reply.content.get("payload", [])
    return [p for p in payload if p.get("source") == "set_next_input"]


def record_text(cell: Cell) -> str:
    (record,) = cell.records()
    return record["text/plain"]


def assert_code_below(cell: Cell, code: str) -> None:
    assert cell.status == "ok", cell.error_text()
    assert next_inputs(cell) == [{"source": "set_next_input", "text": code, "replace": False}]


def test_code_goes_into_a_new_cell_below(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    cell = run_cell(kernel, "stand-in --code", "Read data.csv with pandas.")
    assert_code_below(cell, CODE)
    assert server.last.body["system"] == CODE_INSTRUCTION
    assert server.last.body["prompt"] == "Read data.csv with pandas."
    assert kernel.value("_ollama.code") == CODE
    assert kernel.value("_ollama.text") == ANSWER  # the answer is kept whole
    text = record_text(cell)
    assert text.endswith(BELOW) and "pip install pandas" in text
    assert "ollama-nb-code" in cell.records()[0]["text/html"]


def test_without_code_nothing_changes(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    cell = run_cell(kernel, "stand-in", "Read data.csv with pandas.")
    assert cell.status == "ok" and next_inputs(cell) == []
    assert "system" not in server.last.body
    assert kernel.value("_ollama.code") is None
    assert "code:" not in record_text(cell)


def test_the_system_prompt_is_kept_before_the_instruction(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=ANSWER)
    cell = run_cell(kernel, "stand-in --code --system 'Use polars, never pandas.'", "Read it.")
    assert_code_below(cell, CODE)
    assert server.last.body["system"] == f"Use polars, never pandas.\n\n{CODE_INSTRUCTION}"


def test_an_answer_that_is_only_code(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=CODE + "\n")
    assert_code_below(run_cell(kernel, "stand-in --code", "Read it."), CODE)


def test_a_fence_inside_a_longer_fence(kernel: KernelDriver, server: StandInServer) -> None:
    code = 'doc = """\n```python\nx = 1\n```\n"""\nprint(doc)'
    server.configure(reply=f"Like this:\n\n````python\n{code}\n````\n")
    cell = run_cell(kernel, "stand-in --code", "Quote a fence.")
    assert_code_below(cell, code)
    assert record_text(cell).endswith("code: 6 lines put in a new cell below")


def test_an_answer_cut_by_length_gives_its_open_fence(
    kernel: KernelDriver, server: StandInServer
) -> None:
    # num_predict cuts the answer inside its block: the fence stays open; its content so
    # far is the code (CommonMark: an open fence runs to the end).
    server.configure(reply="Sure:\n\n```python\nx = 1\ny = 2\nz = 3\n```\n")
    cell = run_cell(kernel, "stand-in --code -o num_predict=8", "Three numbers.")
    assert kernel.value("_ollama.done_reason") == "length"
    assert_code_below(cell, "x = 1\ny = 2")
    assert record_text(cell).endswith("code: 2 lines put in a new cell below")


def test_a_stopped_answer_inserts_nothing(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    cell = run_cell(kernel, "stand-in --code --stop-on 'df ='", "Read it.")
    assert cell.status == "ok" and next_inputs(cell) == []
    assert kernel.value("_ollama.done_reason") == "stopped"
    # The code so far stays at hand in _ollama.code; the record says why it is not below.
    assert kernel.value("_ollama.code").startswith("import pandas as pd")
    assert "code: nothing inserted: the answer was stopped (3 lines in .code)" in record_text(cell)


@pytest.mark.parametrize(
    ("knob", "line", "ename", "note"),
    [
        ("error_after", "--code", "OllamaResponseError", "the request failed"),
        ("stall_after", "--code --timeout 0.5", "OllamaTimeoutError", "the request timed out"),
    ],
    ids=["failed", "timed-out"],
)
def test_a_request_that_did_not_finish_inserts_nothing(
    kernel: KernelDriver, server: StandInServer, knob: str, line: str, ename: str, note: str
) -> None:
    server.configure(reply=ANSWER, **{knob: 20})
    cell = run_cell(kernel, f"stand-in {line}", "Read it.")
    assert cell.ename == ename and next_inputs(cell) == []
    assert kernel.value("_ollama.code_note").startswith(f"code: nothing inserted: {note}")


def test_an_answer_without_python_inserts_nothing(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply="Run this in a terminal:\n\n```bash\npip install pandas\n```\n")
    cell = run_cell(kernel, "stand-in --code", "Install pandas.")
    assert cell.status == "ok" and next_inputs(cell) == []
    assert kernel.value("_ollama.code") is None
    assert record_text(cell).endswith("code: nothing inserted: the answer has no Python code block")


def test_code_with_chat(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("%ollama reset")
    server.configure(reply=ANSWER)
    cell = run_cell(kernel, "stand-in --code --chat", "Read data.csv.")
    assert_code_below(cell, CODE)
    assert server.last.path == "/api/chat"
    assert server.last.body["messages"][0] == {"role": "system", "content": CODE_INSTRUCTION}
    kernel.ok("%ollama reset")


@pytest.mark.parametrize("other", ["--each items", "--background"])
def test_code_with_each_or_background_is_a_usage_error(
    kernel: KernelDriver, server: StandInServer, other: str
) -> None:
    kernel.ok("items = ['a', 'b']")
    cell = run_cell(kernel, f"stand-in --code {other}", "Say {item}.")
    assert cell.ename == "UsageError"
    assert f"--code cannot go with {other.split()[0]}" in cell.error_text()
    assert server.requests == [] and next_inputs(cell) == []


def test_autoawait_off_puts_the_code_below(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    kernel.ok("%autoawait off")
    try:
        assert_code_below(run_cell(kernel, "stand-in --code", "Read it."), CODE)
    finally:
        kernel.ok("%autoawait on")


def test_generate_with_code(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    cell = kernel.run("import ollama_nb\nr = ollama_nb.generate('Read it.', 'stand-in', code=True)")
    assert_code_below(cell, CODE)
    assert server.last.body["system"] == CODE_INSTRUCTION
    assert kernel.value("r.code") == CODE
    assert record_text(cell).endswith(BELOW)


def test_agenerate_with_code(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=ANSWER)
    cell = kernel.run(
        "import ollama_nb\nr = await ollama_nb.agenerate('Read it.', 'stand-in', code=True)"
    )
    assert_code_below(cell, CODE)
    assert kernel.value("r.code") == CODE


def test_generate_without_display_only_returns_the_code(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=ANSWER)
    cell = kernel.run(
        "import ollama_nb\nr = ollama_nb.generate('Read it.', 'stand-in', code=True, display=False)"
    )
    assert cell.status == "ok" and next_inputs(cell) == []
    assert kernel.value("r.code") == CODE
    assert kernel.value("r.code_note") == "code: 4 lines in .code (no cell to put it in)"
    bad = kernel.run("ollama_nb.generate('Read it.', 'stand-in', code='yes')")
    assert bad.ename == "InvalidRequest" and "code takes True or False" in bad.error_text()


def test_headless_runs_insert_nothing(
    standin_server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nbclient ignores the payload: the notebook keeps its cells, the record its line;
    nbval then finds what the file holds."""
    standin_server.reset()
    monkeypatch.setenv("OLLAMA_HOST", standin_server.url)
    monkeypatch.setenv("OLLAMA_MODEL", "stand-in")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext ollama_nb"),
        # The reply as an option: nbval runs the notebook on a stand-in of its own.
        nbformat.v4.new_code_cell(
            f"%%ollama --code -o 'standin_reply={json.dumps(ANSWER)}'\nRead data.csv with pandas."
        ),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    saved = tmp_path / "code.ipynb"
    nbformat.write(nb, saved)
    run_headless(saved, standin_server, tmp_path)
    ran = nbformat.read(saved, as_version=4)
    assert [c.source for c in ran.cells] == [c.source for c in nb.cells]
    # The live view's display, emptied, and the record.
    (record,) = [o.data for o in ran.cells[1].outputs if o.get("data")]
    assert record["text/plain"].endswith(BELOW)
    assert ran.cells[2].outputs[0].text == "after\n"

    env = {**os.environ, "OLLAMA_HOST": standin_server.url, "OLLAMA_MODEL": "stand-in"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(saved)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "3 passed" in run.stdout, run.stdout[-1000:]


# -- %ollama fix ---------------------------------------------------------------------------

FAILING = 'total = sales["unit"].sum()\nprint(total)'
FIXED = 'total = sales["units"].sum()\nprint(total)'
FIX_ANSWER = (
    'The frame has no column `"unit"`: it is called `"units"`, so pandas raises a KeyError.\n\n'
    f"```python\n{FIXED}\n```\n"
)
CLEAR_ERRORS = "get_ipython()._ollama_nb_errors.errors.clear()"


@pytest.fixture
def sales(kernel: KernelDriver) -> KernelDriver:
    """A kernel with no error recorded, and a small frame whose values are distinctive."""
    kernel.ok(CLEAR_ERRORS)
    kernel.ok(
        "import pandas as pd\n"
        "sales = pd.DataFrame({'region': ['north-value-xyz', 'south'], 'units': [3, 4]})"
    )
    return kernel


def shown(cell: Cell) -> str:
    """The text/plain of the cell's execute_result."""
    (value,) = [
        m.content["data"]["text/plain"] for m in cell.messages if m.type == "execute_result"
    ]
    return value


def fail(kernel: KernelDriver, code: str) -> int:
    cell = kernel.run(code)
    assert cell.status == "error", code
    return cell.reply.content["execution_count"]


def test_fix_explains_the_last_error_and_puts_the_corrected_cell_below(
    sales: KernelDriver, server: StandInServer
) -> None:
    kernel = sales
    count = fail(kernel, FAILING)
    server.configure(reply=FIX_ANSWER)
    cell = kernel.run("%ollama fix stand-in")
    assert_code_below(cell, FIXED)
    body = server.last.body
    assert body["system"] == CODE_INSTRUCTION
    prompt = body["prompt"]
    assert prompt.startswith(f"{FIX_INSTRUCTION}\n\nIn [{count}]:\n{FAILING}\n\n")
    assert "KeyError: 'unit'" in prompt
    region = kernel.value("str(sales.dtypes.iloc[0])")
    assert prompt.endswith(
        "Notebook variables the cell uses (type and shape only):\n"
        f"- sales: pandas.DataFrame, shape (2, 2); columns: 'region' ({region}), 'units' (int64)"
    )
    assert "north-value-xyz" not in prompt  # types and shapes, never values
    assert kernel.value("_ollama.code") == FIXED
    assert record_text(cell).endswith("code: 2 lines put in a new cell below")
    assert "KeyError" not in cell.error_text()  # the fix cell itself ran fine


def test_fix_n_takes_that_cells_error_and_options_apply(
    sales: KernelDriver, server: StandInServer
) -> None:
    kernel = sales
    first = fail(kernel, FAILING)
    fail(kernel, "raise ValueError('a later one')")
    server.configure(reply=FIX_ANSWER)
    cell = kernel.run(
        f"%ollama fix {first} stand-in-think --think -o temperature=0 --read-timeout 9"
    )
    assert_code_below(cell, FIXED)
    body = server.last.body
    assert FAILING in body["prompt"] and "a later one" not in body["prompt"]
    assert body["think"] is True and body["options"] == {"temperature": 0}
    assert body["model"] == "stand-in-think" and kernel.value("_ollama.thinking")


def test_fix_without_an_error_says_so_and_sends_nothing(
    sales: KernelDriver, server: StandInServer
) -> None:
    kernel = sales
    cell = kernel.run("%ollama fix stand-in")
    assert cell.status == "ok" and next_inputs(cell) == []
    assert shown(cell) == (
        "no error recorded since %load_ext ollama_nb: nothing to fix; nothing was sent"
    )
    count = fail(kernel, FAILING)
    cell = kernel.run(f"%ollama fix {count + 100}")
    assert cell.status == "ok" and next_inputs(cell) == []
    assert shown(cell) == (
        f"no error recorded for cell [{count + 100}] (cells with an error: {count});"
        " nothing was sent"
    )
    assert server.requests == []


@pytest.mark.parametrize("other", ["--each items", "--background"])
def test_fix_with_each_or_background_is_a_usage_error(
    sales: KernelDriver, server: StandInServer, other: str
) -> None:
    kernel = sales
    fail(kernel, FAILING)
    cell = kernel.run(f"%ollama fix stand-in {other}")
    assert cell.ename == "UsageError"
    assert f"%ollama fix: cannot go with {other.split()[0]}" in cell.error_text()
    assert server.requests == []


def test_fix_never_sends_the_api_key(sales: KernelDriver, server: StandInServer) -> None:
    kernel = sales
    kernel.ok(
        "import os\n"
        "os.environ['OLLAMA_API_KEY'] = 'sk-ollama-test-1234'\n"
        "os.environ['OPENAI_API_KEY'] = 'sk-openai-test-5678'"
    )
    try:
        fail(
            kernel,
            "key = os.environ['OLLAMA_API_KEY']\n"
            "print('using', key, os.environ['OPENAI_API_KEY'])\n"
            "raise PermissionError(f'rejected key {key}')",
        )
        server.configure(reply=FIX_ANSWER)
        assert_code_below(kernel.run("%ollama fix stand-in"), FIXED)
        prompt = server.last.body["prompt"]
        sent = json.dumps(server.last.body)
        for secret in ("sk-ollama-test-1234", "sk-openai-test-5678"):
            assert secret not in sent
        assert "PermissionError: rejected key [redacted]" in prompt
        assert "- key: str of length 19" in prompt
    finally:
        kernel.ok("del os.environ['OLLAMA_API_KEY'], os.environ['OPENAI_API_KEY']")


def test_fix_with_autoawait_off(sales: KernelDriver, server: StandInServer) -> None:
    kernel = sales
    fail(kernel, FAILING)
    server.configure(reply=FIX_ANSWER)
    kernel.ok("%autoawait off")
    try:
        assert_code_below(kernel.run("%ollama fix stand-in"), FIXED)
    finally:
        kernel.ok("%autoawait on")


def test_fix_on_plain_values(kernel: KernelDriver, server: StandInServer) -> None:
    """Without pandas (the other kernel stacks have none): a dict, a list, a typo."""
    kernel.ok(CLEAR_ERRORS)
    kernel.ok("prices = {'apple-value-q': 3}\nbasket = ['apple-value-q'] * 4")
    count = fail(kernel, "total = sum(prices[item] for item in baskets)")
    server.configure(
        reply="A typo.\n\n```python\ntotal = sum(prices[item] for item in basket)\n```"
    )
    cell = kernel.run("%ollama fix stand-in")
    assert_code_below(cell, "total = sum(prices[item] for item in basket)")
    prompt = server.last.body["prompt"]
    assert f"In [{count}]:\ntotal = sum(prices[item] for item in baskets)" in prompt
    assert "NameError: name 'baskets' is not defined" in prompt
    assert prompt.endswith("- prices: dict of length 1\n- baskets: not defined in the notebook"), (
        prompt
    )
    assert "apple-value-q" not in prompt


def test_terminal_ipython_offers_the_code_at_the_next_prompt(server: StandInServer) -> None:
    """A full (prompt_toolkit) terminal prompt: --simple-prompt reads with input(), which
    has no text to offer."""
    server.configure(reply="Here:\n\n```python\nx_from_model = 42\n```\n")
    env = {**os.environ, "OLLAMA_HOST": server.url, "TERM": "xterm"}
    argv = ["-m", "IPython", "--no-banner", "--colors=nocolor", "--quick", "--no-autoindent"]
    child = pexpect.spawn(
        sys.executable, argv, env=env, encoding="utf-8", timeout=20, dimensions=(40, 120)
    )
    try:
        child.expect(r"In \[1\]")
        child.send("%load_ext ollama_nb\r")
        child.expect(r"In \[2\]")
        child.send("%%ollama stand-in --code\rSet x.\r\r\r")  # blank lines end the cell
        child.expect("code: 1 line put at the next prompt")
        child.expect(r"In \[3\]: x_from_model = 42")
        child.send("\r")
        child.expect(r"In \[4\]")
        child.send("print(x_from_model + 1)\r")
        child.expect("43")
    finally:
        child.sendline("exit")
        child.close(force=True)
