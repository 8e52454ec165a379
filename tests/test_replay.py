"""Replay in a real kernel against the stand-in (which records every request it gets):
a recorded answer comes back at once with no request, `replay` mode never sends, and a
batch re-run after Stop sends only what is missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_driver import WIDGET_MIME, KernelDriver
from support import assert_one_line_error

from ollama_nb.testing import StandInServer


@pytest.fixture
def cached(kernel: KernelDriver, tmp_path: Path) -> Iterator[Path]:
    """The kernel with `OllamaMagics.cache` set to a new file; off again afterwards."""
    path = tmp_path / "answers.jsonl"
    kernel.ok(
        f"%config OllamaMagics.cache = {str(path)!r}\n"
        "%config OllamaMagics.cache_mode = 'use'\n"
        "from ollama_nb._magics import active; active().results.clear()"
    )
    yield path
    kernel.ok(FORGET)


# Back to "not configured", so that $OLLAMA_NB_CACHE* decide again for the next test; also
# out of IPython's own config, which `%config` fills and a reloaded extension reads again.
FORGET = (
    "from ollama_nb._magics import active\n"
    "active().cache, active().cache_mode = None, 'use'\n"
    "active()._configured -= {'cache', 'cache_mode'}\n"
    "for _name in ('cache', 'cache_mode'):\n"
    "    get_ipython().config.OllamaMagics.pop(_name, None)"
)


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stats_rows(kernel: KernelDriver) -> dict[str, str]:
    cell = kernel.ok("%ollama stats")
    (text,) = [m.content["data"]["text/plain"] for m in cell.messages
               if m.type == "execute_result"]  # fmt: skip
    rows: dict[str, str] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.strip().rpartition("  ")
        if name:
            rows[name.strip()] = rest.strip() if not rest.strip().endswith("s") else rest
    return {k: v.split()[0] for k, v in rows.items()}


def test_a_recorded_answer_is_replayed_with_no_request(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=5)
    kernel.ok("%env OLLAMA_API_KEY=sk-replay-secret")
    try:
        first = kernel.run("%%ollama stand-in -o temperature=0\nName a colour.")
    finally:
        kernel.ok("%env OLLAMA_API_KEY=")
    assert first.status == "ok", first.error_text()
    assert len(server.requests) == 1
    assert server.requests[0].headers.get("authorization") == "Bearer sk-replay-secret"
    assert "sk-replay-secret" not in cached.read_text()  # sent, never written
    assert kernel.value("_ollama.cached") is False
    (line,) = entries(cached)
    assert line["model"] == "stand-in" and line["prompt"] == "Name a colour."
    assert server.url.split("//")[1] not in cached.read_text()  # no host in the file
    recorded = kernel.value("_ollama.text")

    again = kernel.run("%%ollama stand-in -o temperature=0\nName a colour.")
    assert again.status == "ok", again.error_text()
    assert len(server.requests) == 1  # nothing reached the server
    assert not [d for d in again.displays() if WIDGET_MIME in d]  # no live view
    assert again.comm_opens() == []
    (record,) = again.records()
    status = record["text/plain"].splitlines()[-1]
    assert status.startswith("stand-in · stop · ")
    assert " · replayed (recorded " in status and re.search(r"\dZ with stand-in\)$", status)
    assert kernel.value("[_ollama.cached, _ollama.text, type(_ollama).__name__]") == [
        True, recorded, "OllamaResult"
    ]  # fmt: skip
    meta = next(m.content["metadata"] for m in again.messages if m.type == "display_data")
    assert meta["ollama_nb"]["replayed"] is True

    rows = stats_rows(kernel)
    assert rows["requests"] == "1" and rows["replayed (not sent)"] == "1", rows
    shown = kernel.ok("%ollama cache").messages
    (text,) = [m.content["data"]["text/plain"] for m in shown if m.type == "execute_result"]
    assert str(cached) in text and "entries   1" in text
    assert "hits      1" in text and "misses    1" in text


def test_what_is_not_part_of_the_key_and_what_is(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=3)
    kernel.ok("%%ollama stand-in\nKey test.")
    # host spelling, timeouts, retries, keep-alive: the same answer
    same = kernel.run(
        f"%%ollama stand-in --host {server.url} --read-timeout 9 --retries 0 --keep-alive 5m\n"
        "Key test."
    )
    assert same.status == "ok" and len(server.requests) == 1
    kernel.ok("%%ollama stand-in -o seed=2\nKey test.")  # an option: another request
    kernel.ok("x = 'test'")
    kernel.ok("%%ollama stand-in\nKey {x}.")  # variables filled in first: the same prompt
    assert len(server.requests) == 2


def test_no_cache_and_refresh_per_cell(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=3)
    kernel.ok("%%ollama stand-in\nPer cell.")
    kernel.ok("%%ollama stand-in --no-cache\nPer cell.")
    assert len(server.requests) == 2 and len(entries(cached)) == 1  # not recorded either
    kernel.ok("%%ollama stand-in --refresh\nPer cell.")
    assert len(server.requests) == 3 and len(entries(cached)) == 2
    assert kernel.value("_ollama.cached") is False
    kernel.ok("%%ollama stand-in\nPer cell.")
    assert len(server.requests) == 3 and kernel.value("_ollama.cached") is True
    bad = kernel.run("%%ollama stand-in --refresh --no-cache\nPer cell.")
    assert bad.status == "error" and "use one of --refresh and --no-cache" in bad.error_text()


def test_stopped_and_failed_answers_are_not_recorded(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=50)
    kernel.run("%%ollama stand-in --stop-on tokens?\nStopped early.")
    assert kernel.value("_ollama.done_reason") == "stopped"
    failed = kernel.run("%%ollama stand-in -o standin_error_after=2\nFailed.")
    assert failed.status == "error" and kernel.value("_ollama.done_reason") == "error"
    not_json = kernel.run("%%ollama stand-in --format json -o standin_reply=plain\nNot JSON.")
    assert not_json.status == "error"  # finished, but not the JSON asked for: not kept
    kernel.ok("%%ollama stand-in\nFinished.")
    assert [e["prompt"] for e in entries(cached)] == ["Finished."]
    assert len(server.requests) == 4


def test_replay_mode_never_sends_and_a_miss_is_one_line(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=3)
    kernel.ok("%%ollama stand-in\nRecorded prompt.")
    kernel.ok("%config OllamaMagics.cache_mode = 'replay'")
    hit = kernel.run("%%ollama stand-in\nRecorded prompt.")
    assert hit.status == "ok" and len(server.requests) == 1
    miss = kernel.run("%%ollama stand-in\nA changed prompt,\nover two lines.")
    line = assert_one_line_error(miss, "OllamaCacheMissError", "stand-in", "'A changed prompt,'")
    assert "over two lines" not in line and str(cached) in line
    assert miss.displays() == [] and miss.comm_opens() == []  # nothing drawn
    assert len(server.requests) == 1
    kernel.ok("items = ['Recorded prompt.', 'Not recorded.']")
    batch = kernel.run("%%ollama stand-in --each items\n{item}")
    assert_one_line_error(batch, "OllamaCacheMissError", "'Not recorded.'")
    assert batch.displays() == [] and len(server.requests) == 1
    api = kernel.run("import ollama_nb; ollama_nb.generate('Not either.', 'stand-in')")
    assert_one_line_error(api, "OllamaCacheMissError", "'Not either.'")
    assert kernel.value("issubclass(ollama_nb.OllamaCacheMissError, ollama_nb.OllamaError)")


def test_the_python_api_follows_the_settings_and_its_cache_keyword(
    kernel: KernelDriver, server: StandInServer, cached: Path, tmp_path: Path
) -> None:
    server.configure(tokens=3)
    kernel.ok("import ollama_nb; a = ollama_nb.generate('API prompt.', 'stand-in')")
    b = kernel.run("b = await ollama_nb.agenerate('API prompt.', 'stand-in')")
    assert b.status == "ok" and len(server.requests) == 1
    assert kernel.value("[a.cached, b.cached, a.text == b.text]") == [False, True, True]
    kernel.ok("c = ollama_nb.generate('API prompt.', 'stand-in', cache=False, display=False)")
    assert len(server.requests) == 2 and kernel.value("c.cached") is False
    other = tmp_path / "other.jsonl"
    kernel.ok(f"d = ollama_nb.generate('API prompt.', 'stand-in', cache={str(other)!r})")
    assert len(server.requests) == 3 and len(entries(other)) == 1
    bad = kernel.run("ollama_nb.generate('x', 'stand-in', cache=True)")
    assert_one_line_error(bad, "InvalidRequest", "cache takes a file path")


def test_a_batch_rerun_after_stop_sends_only_what_is_missing(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(num_parallel=2, token_interval=0.02, tokens=8)
    kernel.ok("items = list(range(12))")
    code = "%%ollama stand-in --each items --parallel 2\nCount to {item}."
    cell = kernel.submit(code)
    kernel.wait_for(lambda: sum(r.completed for r in server.requests) >= 4, 20, "four answers")
    button = kernel.wait_for(lambda: cell.widget(description="Stop"), 5, "the Stop button")
    kernel.click(button.content["comm_id"])
    kernel.finish(cell, timeout=15)
    counts = kernel.value("_ollama.counts()")
    finished = counts.get("stop", 0)
    assert 4 <= finished < 12, counts
    assert len(entries(cached)) == finished
    before = len(server.requests)

    again = kernel.run(code, timeout=60)
    assert again.status == "ok", again.error_text()
    sent = server.requests[before:]
    assert len(sent) == 12 - finished  # only what was missing
    recorded = {e["prompt"] for e in entries(cached)}
    assert {r.body["prompt"] for r in sent}.isdisjoint(recorded - {r.body["prompt"] for r in sent})
    assert kernel.value("_ollama.counts()") == {"stop": 12}
    assert kernel.value("_ollama.replayed") == finished
    assert kernel.value("[r.cached for r in _ollama].count(True)") == finished
    (record,) = again.records()
    assert f"{finished} replayed (not sent)" in record["text/plain"].splitlines()[0]
    meta = next(m.content["metadata"] for m in again.messages if m.type == "display_data"
                and WIDGET_MIME not in m.content["data"])  # fmt: skip
    assert meta["ollama_nb"]["replayed"] == finished
    third = kernel.run(code, timeout=60)
    assert third.status == "ok" and len(server.requests) == before + 12 - finished
    rows = stats_rows(kernel)
    assert rows["replayed (not sent)"] == str(finished + 12), rows


def test_a_read_only_place_is_one_warning_and_the_request_runs(
    kernel: KernelDriver, server: StandInServer
) -> None:
    # /sys takes no new file, even from root (who ignores a directory's mode bits).
    target = "/sys/ollama-nb-answers.jsonl"
    server.configure(tokens=3)
    kernel.ok(f"%config OllamaMagics.cache = {target!r}")
    try:
        cells = [kernel.run("%%ollama stand-in\nRead-only.") for _ in range(2)]
        assert [c.status for c in cells] == ["ok", "ok"]
        assert len(server.requests) == 2
        (warning,) = cells[0].stream_text("stderr").strip().splitlines()
        assert target in warning and "cannot write it" in warning
        assert cells[1].stream_text("stderr") == ""  # once per session
    finally:
        kernel.ok(FORGET)


def result_text(kernel: KernelDriver, code: str) -> str:
    cell = kernel.ok(code)
    return "".join(m.content["data"]["text/plain"] for m in cell.messages
                   if m.type == "execute_result")  # fmt: skip


def test_config_and_environment(kernel: KernelDriver, tmp_path: Path) -> None:
    path = tmp_path / "env.jsonl"
    kernel.ok(f"%env OLLAMA_NB_CACHE={path}\n%env OLLAMA_NB_CACHE_MODE=refresh")
    try:
        text = result_text(kernel, "%ollama config")
        assert f"{path}" in text and "($OLLAMA_NB_CACHE)" in text
        assert "refresh" in text and "($OLLAMA_NB_CACHE_MODE)" in text
        assert "entries   0" in result_text(kernel, "%ollama cache")
        kernel.ok("%env OLLAMA_NB_CACHE_MODE=sometimes")
        bad = kernel.run("%%ollama stand-in\nx")
        assert "cache_mode ($OLLAMA_NB_CACHE_MODE) takes 'use', 'replay', 'refresh'" in (
            bad.error_text()
        )
        wrong = kernel.run("%config OllamaMagics.cache_mode = 'sometimes'")
        assert "takes 'use', 'replay', 'refresh'" in wrong.error_text() + wrong.stream_text(
            "stderr"
        )
    finally:
        kernel.ok("%env OLLAMA_NB_CACHE=\n%env OLLAMA_NB_CACHE_MODE=")
        kernel.ok(FORGET)


NOTEBOOK_CELLS = [
    "%load_ext ollama_nb\n%config OllamaMagics.cache = 'answers.jsonl'",
    "%%ollama stand-in -o temperature=0\nName a colour.",
    "assert _ollama.cached == (__import__('os').environ.get('OLLAMA_NB_CACHE_MODE') == 'replay')",
]


def _nbval(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pytest --nbval-lax my.ipynb` in `directory` (its own rootdir: none of this
    repository's plugins, so no stand-in is started)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "my.ipynb"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_ci_recipe_replays_a_committed_file_with_no_server(
    server: StandInServer, tmp_path: Path
) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    )
    nbformat.write(notebook, tmp_path / "my.ipynb")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "PYTEST"))}
    server.configure(tokens=4)
    recorded = _nbval(tmp_path, {**base, "OLLAMA_HOST": server.url})
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert len(server.requests) == 1 and len(entries(tmp_path / "answers.jsonl")) == 1

    # CI: the notebook and answers.jsonl committed; nothing listens at the host.
    ci = {**base, "OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_NB_CACHE_MODE": "replay"}
    replayed = _nbval(tmp_path, ci)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(server.requests) == 1

    notebook.cells[1].source = "%%ollama stand-in -o temperature=0\nName a shape."
    nbformat.write(notebook, tmp_path / "my.ipynb")
    changed = _nbval(tmp_path, ci)
    assert changed.returncode != 0
    assert "OllamaCacheMissError: no recorded answer of stand-in to 'Name a shape.'" in (
        changed.stdout
    )
    assert "Connect" not in changed.stdout and len(server.requests) == 1


def test_a_conversation_replays_turn_by_turn(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    server.configure(tokens=3)
    turns = ["%%ollama stand-in --chat\nFirst question.", "%%ollama stand-in --chat\nAnd then?"]
    kernel.ok("%ollama reset")
    first = [kernel.ok(turn) and kernel.value("_ollama.text") for turn in turns]
    assert len(server.requests) == 2
    assert len(server.requests[1].body["messages"]) == 3  # the first turn went with it
    kernel.ok("%ollama reset")
    again = [kernel.ok(turn) and kernel.value("[_ollama.cached, _ollama.text]") for turn in turns]
    assert again == [[True, first[0]], [True, first[1]]] and len(server.requests) == 2
    history = result_text(kernel, "%ollama history")
    assert "First question." in history and "And then?" in history
    kernel.ok("%ollama reset")
    kernel.ok(turns[1])  # the same words after another history: another request
    assert len(server.requests) == 3 and kernel.value("_ollama.cached") is False


TUTORIAL = Path(__file__).resolve().parents[1] / "notebooks" / "09-reproducible-notebooks.ipynb"
TUTORIAL_ANSWERS = TUTORIAL.with_name("09-answers.jsonl")


def test_the_tutorial_replays_its_committed_answers_with_no_server(
    server: StandInServer, tmp_path: Path
) -> None:
    """Tutorial 09 in CI's way: `OLLAMA_NB_CACHE_MODE=replay pytest --nbval-lax`, its
    committed answers, nothing listening at the host (no stand-in: `server` is only there
    to show that nothing reached the shared one); a changed prompt fails with the miss."""
    import nbformat

    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(TUTORIAL_ANSWERS.read_bytes())
    notebook = nbformat.read(TUTORIAL, as_version=4)
    nbformat.write(notebook, tmp_path / "my.ipynb")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "PYTEST"))}
    ci = {**base, "OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_MODEL": "stand-in",
          "OLLAMA_NB_CACHE": str(answers), "OLLAMA_NB_CACHE_MODE": "replay"}  # fmt: skip
    replayed = _nbval(tmp_path, ci)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert answers.read_bytes() == TUTORIAL_ANSWERS.read_bytes()  # replay never writes

    cell = next(c for c in notebook.cells if "Name the three primary colours of light." in
                c.source and c.source.startswith("%%ollama"))  # fmt: skip
    cell.source = cell.source.replace("of light.", "of light, please.")
    nbformat.write(notebook, tmp_path / "my.ipynb")
    changed = _nbval(tmp_path, ci)
    assert changed.returncode != 0
    assert (
        "OllamaCacheMissError: no recorded answer of stand-in to"
        " 'Name the three primary colours of light, please.'" in changed.stdout
    )
    assert server.requests == []


def test_a_synchronous_cell_replays_too(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    """`%autoawait off`: the request runs on a worker thread whose view calls the kernel's
    thread replays; a hit draws the record alone there too."""
    server.configure(tokens=3)
    kernel.ok("%%ollama stand-in\nSynchronous.")
    kernel.ok("%autoawait off")
    try:
        cell = kernel.run("%%ollama stand-in\nSynchronous.")
        assert cell.status == "ok", cell.error_text()
        assert cell.comm_opens() == [] and len(server.requests) == 1
        (record,) = cell.records()
        assert " · replayed (recorded " in record["text/plain"]
        assert kernel.value("_ollama.cached") is True
    finally:
        kernel.ok("%autoawait on")


def test_two_kernels_record_into_one_file_at_once(
    kernel: KernelDriver, server: StandInServer, cached: Path
) -> None:
    """1,000 answers from two kernels' batches (4 requests in flight each) at the same
    time: every line one whole entry, none lost."""
    other = KernelDriver(sys.executable, env={"OLLAMA_HOST": server.url, "OLLAMA_MODEL": ""})
    try:
        other.ok(f"%load_ext ollama_nb\n%config OllamaMagics.cache = {str(cached)!r}")
        server.configure(num_parallel=8, token_interval=0, tokens=2)
        code = (
            "import ollama_nb\n"
            "b = ollama_nb.map('{{item}} from {name}', range(500), 'stand-in', parallel=4,"
            " display=False)"
        )
        cells = [(k, k.submit(code.format(name=name))) for k, name in ((kernel, "a"), (other, "b"))]
        for driver, cell in cells:
            driver.finish(cell, timeout=180)
            assert cell.status == "ok", cell.error_text()
        data = cached.read_bytes()
        assert data.endswith(b"\n")
        prompts = [json.loads(line)["prompt"] for line in data.splitlines()]
        assert sorted(prompts) == sorted(f"{i} from {n}" for n in "ab" for i in range(500))
        assert kernel.value("b.counts()") == {"stop": 500} == other.value("b.counts()")
    finally:
        other.close()


def test_replay_in_the_colab_stack(
    colab_kernel: KernelDriver, server: StandInServer, tmp_path: Path
) -> None:
    """ipykernel 6.17 / IPython 7.34 / ipywidgets 7.7: record, then the record alone."""
    path = tmp_path / "colab.jsonl"
    colab_kernel.ok(f"%config OllamaMagics.cache = {str(path)!r}")
    try:
        server.configure(tokens=3)
        assert colab_kernel.run("%%ollama stand-in\nColab.").status == "ok"
        again = colab_kernel.run("%%ollama stand-in\nColab.")
        assert again.status == "ok" and len(server.requests) == 1
        (record,) = again.records()
        assert " · replayed (recorded " in record["text/plain"]
    finally:
        colab_kernel.ok(FORGET)
