"""The Python API (`ollama_nb.generate`, `agenerate`, `embed`): in scripts and in real
kernels, against the stand-in — what the server received and what the user saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from kernel_driver import Cell, KernelDriver
from support import REPLY, assert_one_line_error, spawn_ipython

import ollama_nb
from ollama_nb.testing import StandInServer

HEAVY = ("IPython", "ipywidgets", "numpy", "PIL", "matplotlib", "httpx", "markdown_it")


def visible(cell: Cell) -> list[dict[str, Any]]:
    """The outputs a front end shows at the end: clear_output applied as front ends do
    (wait=True clears when the next output arrives), update_display_data applied."""
    shown: list[dict[str, Any]] = []
    pending_clear = False
    kinds = {"stream", "display_data", "execute_result", "error", "clear_output"}
    for msg in cell.messages:
        if msg.type not in kinds and msg.type != "update_display_data":
            continue
        if msg.type == "clear_output":
            if msg.content.get("wait"):
                pending_clear = True
            else:
                shown.clear()
            continue
        if pending_clear:
            shown.clear()
            pending_clear = False
        ident = msg.content.get("transient", {}).get("display_id")
        if msg.type == "update_display_data":
            for out in shown:
                if ident and out["display_id"] == ident:
                    out["data"] = msg.content["data"]
            continue
        data = dict(msg.content.get("data") or {"stream": msg.content.get("text", "")})
        shown.append({"type": msg.type, "data": data, "display_id": ident})
    return shown


def visible_records(cell: Cell) -> list[str]:
    """The static records (text/plain) left in the cell."""
    return [
        o["data"]["text/plain"]
        for o in visible(cell)
        if o["type"] == "display_data" and "text/html" in o["data"] and "text/plain" in o["data"]
    ]


def run_script(
    code: str, server: StandInServer, timeout: float = 60
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_HOST": server.url, "OLLAMA_MODEL": ""}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


# -- plain Python: scripts ---------------------------------------------------------------


def test_a_script_gets_the_answer_and_shows_nothing_else(server: StandInServer) -> None:
    server.configure(reply=REPLY)
    done = run_script(
        f"""
        import sys, ollama_nb
        result = ollama_nb.generate("Say hello.", "stand-in")
        print(result.text)
        print(result.done_reason, type(result).__name__)
        print(sorted(m for m in {HEAVY!r} if m in sys.modules and m in ("IPython", "ipywidgets")))
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [REPLY, "stop OllamaResult", "[]"]
    assert done.stderr == ""
    assert server.last.path == "/api/generate" and server.last.body["prompt"] == "Say hello."


def test_a_script_sees_errors_as_exceptions(server: StandInServer) -> None:
    done = run_script(
        """
        import ollama_nb
        try:
            ollama_nb.generate("Hi", "no-such-model")
        except ollama_nb.OllamaModelNotFoundError as exc:
            print("caught:", exc.model)
        try:
            ollama_nb.generate("Hi", "stand-in", read_timeout=-1)
        except ValueError as exc:
            print("bad:", exc)
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "caught: no-such-model",
        "bad: read_timeout must be a positive number of seconds, not -1",
    ]


def test_import_is_cheap() -> None:
    code = f"import sys, ollama_nb; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- in a kernel ----------------------------------------------------------------------------


def test_a_loop_of_calls_leaves_one_record_each(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    kernel.ok("import ollama_nb")
    cell = kernel.ok(
        "results = [ollama_nb.generate(f'Question {i}.', 'stand-in') for i in range(3)]"
    )
    prompts = [r.body["prompt"] for r in server.requests if r.path == "/api/generate"]
    assert prompts == ["Question 0.", "Question 1.", "Question 2."]
    records = visible_records(cell)
    assert len(records) == 3, visible(cell)
    assert all(REPLY in text and "stand-in" in text for text in records)
    # Each call showed its own live view first.
    assert len([d for d in cell.displays() if "application/vnd.jupyter.widget-view+json" in d]) == 3
    # Not stored in `_ollama`: that is the magic's.
    assert kernel.value("any(globals().get('_ollama') is r for r in results)") is False
    assert kernel.value("[r.text for r in results]") == [REPLY] * 3


def test_display_false_shows_nothing(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=REPLY)
    cell = kernel.ok("import ollama_nb\nr = ollama_nb.generate('Hi.', 'stand-in', display=False)")
    assert cell.outputs() == [] and cell.comm_opens() == []
    assert kernel.value("r.text") == REPLY


def test_defaults_come_from_config_then_environment(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import ollama_nb")
    # No model anywhere: the same clear error as the magic, listing the server's models.
    cell = kernel.run("ollama_nb.generate('Hi.', display=False)")
    line = assert_one_line_error(cell, "InvalidRequest", "no model given", "stand-in:latest")
    assert "model=" in line
    kernel.ok("%config OllamaMagics.model = 'stand-in'")
    kernel.ok("%config OllamaMagics.keep_alive = '10m'")
    kernel.ok("%config OllamaMagics.system = 'Be brief.'")
    try:
        kernel.ok("r = ollama_nb.generate('Hi.', display=False)")
        body = server.last.body
        assert body["model"] == "stand-in" and body["keep_alive"] == "10m"
        assert body["system"] == "Be brief."
        kernel.ok("r = ollama_nb.generate('Hi.', keep_alive=0, system='Other.', display=False)")
        assert server.last.body["keep_alive"] == 0 and server.last.body["system"] == "Other."
    finally:
        kernel.ok("%config OllamaMagics.model = None")
        kernel.ok("%config OllamaMagics.keep_alive = None")
        kernel.ok("%config OllamaMagics.system = None")


def test_keywords_are_sent_like_the_magic_options(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import ollama_nb")
    kernel.ok(
        "r = ollama_nb.generate('Hi.', 'stand-in-think', think='high', format='json',"
        " options={'temperature': 0}, display=False)"
    )
    body = server.last.body
    assert body["think"] == "high" and body["format"] == "json"
    assert body["options"] == {"temperature": 0}
    # Any letter: the pattern holds for a real engine's words too (tests/run --forward).
    kernel.ok("r = ollama_nb.generate('Hi.', 'stand-in', stop_on='[A-Za-z]', display=False)")
    assert kernel.value("r.done_reason") == "stopped"
    for call, words in [
        ("think='loud'", ("think takes",)),
        ("format=3", ("format takes",)),
        ("stop_on='('", ("not a valid regular expression",)),
        ("retries=-1", ("retries must be",)),
    ]:
        cell = kernel.run(f"ollama_nb.generate('Hi.', 'stand-in', {call}, display=False)")
        assert_one_line_error(cell, "InvalidRequest", *words)


def test_errors_raise_in_one_line(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("import ollama_nb")
    cell = kernel.run("ollama_nb.generate('Hi.', 'no-such-model')")
    assert_one_line_error(cell, "OllamaModelNotFoundError", "ollama pull no-such-model")
    server.configure(first_chunk_delay=3)
    cell = kernel.run("ollama_nb.generate('Hi.', 'stand-in', read_timeout=0.3)")
    assert_one_line_error(cell, "OllamaTimeoutError", "read timeout")
    # The failed request still left its record in the cell.
    assert len(visible_records(cell)) == 1


def test_interrupt_ends_generate_in_a_sync_cell(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply="word " * 400, token_interval=0.05)
    kernel.ok("import ollama_nb")
    cell = kernel.submit("r = ollama_nb.generate('Talk.', 'stand-in')")
    record = server.wait_for_request("/api/generate", timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 3, 10, "some chunks")
    kernel.interrupt()
    kernel.finish(cell, timeout=15)
    assert cell.ename == "RequestInterrupted"
    assert cell.error()["traceback"] == [
        "KeyboardInterrupt: the request was interrupted; the response was closed"
    ]
    assert record.wait_closed(5) and not record.completed
    assert record.chunks_after_disconnect == 0


@pytest.mark.parametrize("which", ["kernel_74", pytest.param("kernel_629", marks=pytest.mark.k6)])
def test_stop_works_in_agenerate(
    which: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(which)
    try:
        server.configure(reply="word " * 400, token_interval=0.05)
        kernel.ok("import ollama_nb")
        cell = kernel.submit("r = await ollama_nb.agenerate('Talk.', 'stand-in')")
        record = server.wait_for_request("/api/generate", timeout=10)
        stop = kernel.wait_for(lambda: cell.widget(description="Stop"), 10, "the Stop button")
        assert stop.content["data"]["state"]["disabled"] is False
        kernel.wait_for(lambda: record.chunks_sent >= 3, 10, "some chunks")
        kernel.click(stop.content["comm_id"])
        kernel.finish(cell, timeout=15)
        assert cell.status == "ok", cell.error_text()
        assert kernel.value("r.done_reason") == "stopped"
        assert record.wait_closed(5) and not record.completed
        assert len(visible_records(cell)) == 1
    finally:
        kernel.settle()


def test_embed_returns_plain_float_vectors(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("import ollama_nb")
    kernel.ok("one = ollama_nb.embed('hello', 'stand-in-embed')")
    assert server.last.path == "/api/embed" and server.last.body["input"] == ["hello"]
    assert kernel.value("[type(one).__name__, all(type(x) is float for x in one)]") == [
        "list",
        True,
    ]
    kernel.ok("many = ollama_nb.embed(['hello', 'world', 'hello'], 'stand-in-embed')")
    vectors = kernel.value("many")
    assert len(vectors) == 3 and vectors[0] == vectors[2] and vectors[0] == kernel.value("one")


def test_embed_sends_long_lists_in_batches_with_progress(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import ollama_nb")
    cell = kernel.ok("vs = ollama_nb.embed([f'text {i}' for i in range(150)], 'stand-in-embed')")
    sizes = [len(r.body["input"]) for r in server.requests if r.path == "/api/embed"]
    assert sizes == [64, 64, 22]
    assert kernel.value("len(vs)") == 150
    assert cell.widget(description="embed") is not None  # the progress bar
    (line,) = [o["data"] for o in visible(cell)]
    assert line == {"text/plain": line["text/plain"]}
    assert line["text/plain"].startswith("embedded 150 texts in ")
    # Errors: one line, before anything is sent for bad input.
    assert_one_line_error(kernel.run("ollama_nb.embed(3)"), "InvalidRequest", "str or a list")
    assert_one_line_error(
        kernel.run("ollama_nb.embed('x', 'no-such-model')"), "OllamaModelNotFoundError"
    )


def test_embed_in_a_script(server: StandInServer) -> None:
    done = run_script(
        """
        import json, ollama_nb
        print(json.dumps(ollama_nb.embed(["a", "b"], "stand-in-embed")))
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    vectors = json.loads(done.stdout)
    assert len(vectors) == 2 and all(isinstance(x, float) for x in vectors[0])


# -- terminal IPython -----------------------------------------------------------------------


def test_terminal_ipython_shows_nothing_and_ctrl_c_closes(server: StandInServer) -> None:
    import pexpect

    server.configure(reply=REPLY)
    child = spawn_ipython(server)
    try:
        child.sendline("import ollama_nb; r = ollama_nb.generate('Hi.', 'stand-in')")
        child.expect(r"In \[2\]: ")
        assert server.wait_for_request("/api/generate").body["prompt"] == "Hi."
        assert child.before.split("\n", 1)[1].strip() == ""  # nothing shown but the echo
        child.sendline("print(r.text == " + repr(REPLY) + ", r.done_reason)")
        child.expect("True stop")
        child.expect(r"In \[3\]: ")
        server.configure(reply=None, token_interval=0.05, tokens=2000)
        child.sendline("r = ollama_nb.generate('Talk.', 'stand-in')")
        record = server.wait_for_request("/api/generate", timeout=10)
        while record.chunks_sent < 3:
            child.expect(pexpect.TIMEOUT, timeout=0.05)
        child.sendintr()
        child.expect("KeyboardInterrupt: the request was interrupted; the response was closed")
        assert "Traceback" not in child.before
        assert record.wait_closed(5) and not record.completed
        assert record.chunks_after_disconnect == 0
    finally:
        child.sendline("exit")
        child.expect(pexpect.EOF)


def test_calls_from_worker_threads_show_nothing(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = kernel.ok(
        "import ollama_nb\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    texts = list(pool.map(lambda p: ollama_nb.generate(p, 'stand-in').text, ['a', 'b']))"
    )
    assert kernel.value("texts") == [REPLY, REPLY]
    assert cell.outputs() == [] and cell.comm_opens() == []


# -- prompt fields: map fills {item}, {index} and variables=; generate only with variables= --


def _generate_prompts(server: StandInServer) -> list[str]:
    return [r.body["prompt"] for r in server.requests if r.path == "/api/generate"]


def test_map_fills_item_index_and_variables_never_the_notebook(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import ollama_nb\nlang = 'German'")
    # A notebook variable is not a field of map: the error names the API's ways out.
    cell = kernel.run("ollama_nb.map('Translate to {lang}: {item}', ['cat', 'dog'], 'stand-in')")
    line = assert_one_line_error(
        cell, "InvalidRequest", "{lang}", "{item}, {index}", "variables={'lang': ...}", "{{lang}}"
    )
    assert "--no-vars" not in line and "notebook" not in line
    assert _generate_prompts(server) == []  # nothing was sent
    kernel.ok(
        "b = ollama_nb.map('Translate to {lang}: {item} ({index})', ['cat', 'dog'], 'stand-in',"
        " variables={'lang': 'French'})"
    )
    assert _generate_prompts(server) == [
        "Translate to French: cat (0)",
        "Translate to French: dog (1)",
    ]
    server.reset()
    kernel.ok(
        "b = await ollama_nb.amap('{greeting}, {item}! {{literal}}', ['Ann'], 'stand-in',"
        " variables={'greeting': 'Hi'})"
    )
    assert _generate_prompts(server) == ["Hi, Ann! {literal}"]
    # The magic's switch (--no-vars as a setting) does not turn map's fields off.
    server.reset()
    kernel.ok("%config OllamaMagics.variables = False")
    try:
        kernel.ok("b = ollama_nb.map('Say {item}.', ['yes'], 'stand-in', display=False)")
    finally:
        kernel.ok("%config OllamaMagics.variables = True")
    assert _generate_prompts(server) == ["Say yes."]


def test_generate_fills_fields_only_with_variables(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import ollama_nb\nlang = 'German'")
    # Without variables= the prompt is sent as written, braces and all.
    kernel.ok("r = ollama_nb.generate('To {lang}: {{x}}', 'stand-in', display=False)")
    kernel.ok("r = await ollama_nb.agenerate('To {lang}: {{x}}', 'stand-in', display=False)")
    kernel.ok(
        "r = ollama_nb.generate('To {lang}: {{x}}', 'stand-in', variables={'lang': 'French'},"
        " display=False)"
    )
    kernel.ok(
        "r = await ollama_nb.agenerate('To {lang!r}', 'stand-in', variables={'lang': 'French'},"
        " display=False)"
    )
    assert _generate_prompts(server) == [
        "To {lang}: {{x}}",
        "To {lang}: {{x}}",
        "To French: {x}",
        "To 'French'",
    ]
    cell = kernel.run(
        "ollama_nb.generate('To {lang} in a {tone} tone', 'stand-in', variables={'lang': 'French'})"
    )
    line = assert_one_line_error(cell, "InvalidRequest", "{tone}", "variables=", "{{tone}}")
    assert "--no-vars" not in line and "notebook" not in line
    assert len(_generate_prompts(server)) == 4  # nothing more was sent


def test_variables_is_checked_and_fill_errors_name_no_magic_option(server: StandInServer) -> None:
    host = server.url
    for call, words in [
        (lambda: ollama_nb.generate("Hi {x}", "stand-in", variables=["x"]), "a mapping"),
        (lambda: ollama_nb.generate("Hi {x}", "stand-in", variables={1: "x"}), "str keys"),
        (lambda: ollama_nb.map("{item}", [1], "stand-in", variables={"item": 2}), "{item}"),
        # A field the element does not have: the first element's error is raised...
        (lambda: ollama_nb.map("{item[b]}", [{"a": 1}], "stand-in", host=host), "{item[b]}"),
    ]:
        with pytest.raises(ValueError) as caught:
            call()
        assert words in str(caught.value) and "--no-vars" not in str(caught.value)
    assert _generate_prompts(server) == []
    # ... a later element's is its own failure, worded for the API too.
    batch = ollama_nb.map("{item[a]}", [{"a": 1}, {"b": 2}], "stand-in", host=host, display=False)
    assert batch.counts() == {"stop": 1, "error": 1}
    message = str(batch[1].error)
    assert "cannot fill {item[a]}" in message and "--no-vars" not in message
