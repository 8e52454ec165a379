"""Conversations, thinking, structured output, --stop-on, --background, the line
commands and settings: what the server received and what the user got, in a real kernel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kernel_driver import Cell, KernelDriver
from support import REPLY, assert_one_line_error, result, run_cell

from ollama_nb.testing import StandInServer


def out_text(cell: Cell) -> str:
    """The text/plain of the cell's execute_result (what `%ollama models` etc. return)."""
    (value,) = [
        m.content["data"]["text/plain"] for m in cell.messages if m.type == "execute_result"
    ]
    return value


@pytest.fixture
def fresh_chat(kernel: KernelDriver) -> KernelDriver:
    kernel.ok("%ollama reset")
    return kernel


def test_chat_keeps_the_conversation(fresh_chat: KernelDriver, server: StandInServer) -> None:
    kernel = fresh_chat
    server.configure(reply="Hi Ada.")
    assert run_cell(kernel, "stand-in --chat --system 'Be kind.'", "I am Ada.").status == "ok"
    server.configure(reply="You are Ada.")
    assert run_cell(kernel, "stand-in --chat --system 'Be kind.'", "Who am I?").status == "ok"
    assert server.last.path == "/api/chat"
    assert server.last.body["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    assert result(kernel)["text"] == "You are Ada."
    history = out_text(kernel.ok("%ollama history"))
    assert "I am Ada." in history and "You are Ada." in history
    assert out_text(kernel.ok("%ollama reset")) == "conversation cleared (2 turns)"
    assert out_text(kernel.ok("%ollama history")) == "no conversation yet"


def test_an_unfinished_turn_is_kept_marked_and_not_replayed(
    fresh_chat: KernelDriver, server: StandInServer
) -> None:
    kernel = fresh_chat
    server.configure(reply="One. Two. Three.")
    cell = run_cell(kernel, "stand-in --chat --stop-on 'One[.]'", "Count.")
    assert cell.status == "ok" and result(kernel)["done_reason"] == "stopped"
    server.configure(reply="Sure.")
    assert run_cell(kernel, "stand-in --chat", "Again?").status == "ok"
    assert server.last.body["messages"] == [{"role": "user", "content": "Again?"}]
    history = out_text(kernel.ok("%ollama history"))
    assert "stopped: not sent" in history and "Count." in history


def test_think_streams_thinking_apart(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(thinking="Let me see: 391 = 17 x 23.", reply="No, 391 = 17 x 23.")
    cell = kernel.submit(
        "%%ollama stand-in-think --think -o standin_token_interval=0.05\nIs 391 prime?"
    )
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.finish(cell)
    assert cell.status == "ok", cell.error_text()
    assert server.last.body["think"] is True
    r = result(kernel)
    assert r["thinking"] == "Let me see: 391 = 17 x 23." and r["text"] == "No, 391 = 17 x 23."
    # Live, the thinking streamed too (into its collapsed area), then the answer.
    states = [m.content["data"].get("state", {}) for m in cell.messages if m.type == "comm_msg"]
    assert any("Let me see" in state.get("value", "") for state in states)
    (record,) = [d for d in cell.records() if "text/plain" in d]
    html = record["text/html"]
    assert html.index("<summary>Thinking</summary>") < html.index("No, 391")
    assert html.index("<details") < html.index("<summary>")


def test_think_on_a_model_that_cannot(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, "stand-in --think")
    assert_one_line_error(cell, "OllamaResponseError", "HTTP 400", "does not support thinking")


def test_format_json_and_schema(kernel: KernelDriver, server: StandInServer) -> None:
    assert run_cell(kernel, "stand-in --format json").status == "ok"
    assert server.last.body["format"] == "json"
    assert result(kernel)["json"]["stand_in"] is True
    kernel.ok("schema = {'type': 'object', 'properties': {'n': {'type': 'integer'}}}")
    assert run_cell(kernel, "stand-in --format schema").status == "ok"
    assert server.last.body["format"] == {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
    }
    assert result(kernel)["json"] == {"n": 0}


def test_format_invalid_json_is_a_clear_error_with_the_text_kept(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply="not { json")
    cell = run_cell(kernel, "stand-in --format json")
    assert_one_line_error(cell, "OllamaResponseError", "not valid JSON", "the text is kept")
    assert result(kernel)["text"] == "not { json"
    for line in ["stand-in --format nope", "stand-in --format REPLY_LIST"]:
        kernel.ok("REPLY_LIST = [1]")
        assert run_cell(kernel, line).ename == "UsageError"


def test_stop_on_closes_the_response(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply="alpha beta STOP gamma delta " * 50, token_interval=0.01)
    assert run_cell(kernel, "stand-in --stop-on STOP").status == "ok"
    r = result(kernel)
    assert r["done_reason"] == "stopped" and r["stopped"] and r["text"] == "alpha beta STOP "
    record = server.last
    assert record.wait_closed(2) and not record.completed
    # The server stopped generating long before the end of its 250-token answer.
    assert record.chunks_after_disconnect == 0 and record.chunks_sent < 100


def test_posix_classes_in_stop_on_are_a_one_line_error(
    kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(kernel, "stand-in --stop-on '[[:alpha:]]+'")
    assert cell.ename == "UsageError"
    text = cell.error_text()
    assert "[:alpha:] is a POSIX class" in text and "[^\\W\\d_]" in text
    assert len(text.strip().splitlines()) == 1 and "FutureWarning" not in text
    cell = kernel.run(
        "import ollama_nb\n"
        "ollama_nb.generate('Hi.', 'stand-in', stop_on='[[:digit:]]', display=False)"
    )
    assert "[:digit:] is a POSIX class" in cell.error_text()
    assert "FutureWarning" not in cell.stream_text("stderr")
    assert all(r.path != "/api/generate" for r in server.requests)


def test_other_regex_warnings_are_about_the_pattern_not_the_package(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply="one two three")
    cell = run_cell(kernel, "stand-in --stop-on '[a&&b]'")
    assert cell.status == "ok"
    warning = cell.stream_text("stderr")
    assert "FutureWarning: --stop-on '[a&&b]': Possible set intersection" in warning
    assert "ollama_nb" not in warning and "site-packages" not in warning


def test_background_returns_at_once_and_fills_the_result(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY, token_interval=0.1)
    # The cell returns once a front end drew its view (headless, it waits for the answer).
    cell = kernel.run_drawn("%%ollama stand-in --background --out later\nTake your time.")
    assert cell.status == "ok" and cell.records() == []  # returned before the answer
    record = server.wait_for_request("/api/generate", timeout=5)
    assert not record.closed.is_set()
    kernel.ok("x = 1")  # the kernel is free meanwhile
    assert record.wait_closed(10) and record.completed

    def record_arrived() -> bool:
        kernel.collect(cell)
        return bool(cell.records())

    kernel.wait_for(record_arrived, 5, "the background record in its own cell")
    assert REPLY in cell.records()[0]["text/plain"]
    kernel.wait_for(lambda: kernel.value("'later' in globals()"), 5, "the result")
    assert result(kernel, "later")["text"] == REPLY


def test_two_background_streams_each_stop_on_their_own(
    kernel: KernelDriver, server: StandInServer
) -> None:
    # Three requests at once on one model: as on an Ollama with OLLAMA_NUM_PARALLEL >= 3
    # (with 1, the second and the foreground one would wait in the server's queue).
    server.configure(num_parallel=3)
    slow = "-o standin_token_interval=0.05 -o standin_tokens=2000"
    first = kernel.run_drawn(f"%%ollama stand-in --background --out a {slow}\nOne.")
    second = kernel.run_drawn(f"%%ollama stand-in --background --out b {slow}\nTwo.")
    records = [server.wait_for_request(timeout=5), server.wait_for_request(timeout=5)]
    foreground = kernel.run("%%ollama stand-in\nMeanwhile.")
    assert foreground.status == "ok" and len(foreground.records()) == 1
    for cell in (first, second):
        stop = kernel.wait_for(lambda c=cell: c.widget(description="Stop"), 5, "Stop")
        kernel.click(stop.content["comm_id"])
    assert all(r.wait_closed(5) and not r.completed for r in records)
    for name in ("a", "b"):
        kernel.wait_for(lambda n=name: kernel.value(f"'{n}' in globals()"), 5, name)
        assert result(kernel, name)["done_reason"] == "stopped"
    for cell in (first, second):
        kernel.wait_for(lambda c=cell: kernel.collect(c) or c.records(), 5, "its record")
        assert "· stopped ·" in cell.records()[0]["text/plain"]


def test_models_ps_version_and_config(kernel: KernelDriver, server: StandInServer) -> None:
    models = out_text(kernel.ok("%ollama models"))
    assert "stand-in:latest" in models and "quantization" in models
    assert run_cell(kernel, "stand-in").status == "ok"
    assert "stand-in:latest" in out_text(kernel.ok("%ollama ps"))
    assert "server 0.0.0-stand-in" in out_text(kernel.ok("%ollama version"))
    kernel.ok("%config OllamaMagics.model = 'stand-in'")
    try:
        setting = kernel.ok("%config OllamaMagics.read_timeout = 300")
        assert setting.stream_text("stderr") == ""  # no warnings about the other settings
        config = out_text(kernel.ok("%ollama config"))
        assert "300.0" in config and "(%config)" in config and "($OLLAMA_HOST)" in config
        assert "api key" in config and "not set" in config
    finally:
        kernel.ok("%config OllamaMagics.read_timeout = 120")
        kernel.ok("%config OllamaMagics.model = None")
    assert kernel.run("%ollama frobnicate").ename == "UsageError"
    assert kernel.run("%ollama pull").ename == "UsageError"


def test_config_precedence_and_validation(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(first_chunk_delay=1.5)
    kernel.ok("%config OllamaMagics.read_timeout = 0.5")
    try:
        # %config applies...
        assert run_cell(kernel, "stand-in").error()["ename"] == "OllamaTimeoutError"
        # ...and a cell option takes precedence over it.
        assert run_cell(kernel, "stand-in --read-timeout 5").status == "ok"
    finally:
        kernel.ok("%config OllamaMagics.read_timeout = 120")
    # IPython's %config reports a rejected value itself; the setting stays as it was.
    bad = kernel.run("%config OllamaMagics.read_timeout = -1")
    assert "read_timeout must be a positive number of seconds, not -1" in bad.stream_text("stderr")
    assert kernel.value("get_ipython().magics_manager.registry['OllamaMagics'].read_timeout") == 120
    # IPython keeps the rejected value in its config: loading again reports it, and loads.
    kernel.ok("%unload_ext ollama_nb")
    again = kernel.ok("%load_ext ollama_nb")
    assert again.stream_text("stderr").startswith("OllamaMagics: read_timeout must be")
    assert "keeping read_timeout = 120.0" in again.stream_text("stderr")
    assert "not recognized" not in again.stream_text("stderr")
    kernel.ok("%config OllamaMagics.read_timeout = 120")


def test_pull_progress_stop_and_resume(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(pull_interval=0.05)
    cell = kernel.submit("%ollama pull tinyllama")
    bar = kernel.wait_for(lambda: cell.widget(description="pull"), 5, "the progress bar")
    record = server.wait_for_request("/api/pull", timeout=5)
    kernel.wait_for(lambda: record.chunks_sent >= 6, 10, "some progress")
    clicked = kernel.click(
        kernel.wait_for(lambda: cell.widget(description="Stop"), 5, "Stop").content["comm_id"]
    )
    kernel.finish(cell, timeout=10)
    assert cell.status == "ok" and cell.reply.at - clicked < 0.5
    assert record.wait_closed(2) and not record.completed
    (summary,) = cell.records()
    assert summary["text/plain"].startswith("stopped: tinyllama pull at ")
    assert "; %ollama pull tinyllama resumes it" in summary["text/plain"]
    moved = [m.content["data"]["state"]["value"] for m in cell.updates_of(bar.content["comm_id"])
             if "value" in m.content["data"]["state"]]  # fmt: skip
    assert moved and 0 < max(moved) < 100

    server.configure(pull_interval=0.0)
    again = kernel.run("%ollama pull tinyllama")
    assert again.status == "ok" and again.records()[0]["text/plain"].startswith("pulled tinyllama")
    assert "tinyllama:latest" in out_text(kernel.ok("%ollama models"))


def test_stats_counts_outcomes_and_percentiles(kernel: KernelDriver, server: StandInServer) -> None:
    before = kernel.value("len(__import__('ollama_nb._magics', fromlist=['_']).active().results)")
    assert run_cell(kernel, "stand-in").status == "ok"
    assert run_cell(kernel, "stand-in --stop-on '.'").status == "ok"
    server.configure(first_chunk_delay=5)
    assert run_cell(kernel, "stand-in --read-timeout 0.3").status == "error"
    server.configure(first_chunk_delay=0)
    assert run_cell(kernel, "no-such-model").status == "error"
    stats = out_text(kernel.ok("%ollama stats"))
    lines: dict[str, Any] = {
        row[0]: row[1] for row in (re.split(r"\s{2,}", line) for line in stats.splitlines()[2:])
        if len(row) > 1
    }  # fmt: skip
    assert int(lines["requests"]) == before + 4
    for name in ("done", "stopped", "timeout (read)", "error"):
        assert int(lines[name]) >= 1, stats
    for key in ("latency min", "latency p50", "latency max", "time to first token p50"):
        assert lines[key].endswith(" s")
    if before + 4 < 20:  # a tail percentile needs enough samples to mean something
        assert "latency p95" not in lines and "p95 is shown from 20 samples on" in stats


def test_the_session_keeps_no_answer_once_it_is_dropped(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """`%ollama stats` counts every request, but an answer (or a batch) the user drops is
    freed: a long session of big answers does not keep them all."""
    kernel.ok("import gc, weakref; items = [1, 2, 3]")
    assert run_cell(kernel, "stand-in").status == "ok"
    kernel.ok("one = weakref.ref(_ollama)")
    assert run_cell(kernel, "stand-in --each items").status == "ok"
    # The batch's answers live in its columns.
    kernel.ok("many = weakref.ref(_ollama._columns); _ollama = None; gc.collect()")
    assert kernel.value("(one() is None, many() is None)") == [True, True]
    stats = out_text(kernel.ok("%ollama stats"))
    assert re.search(r"requests\s+\d+", stats), stats


def test_think_flags_send_true_false_a_level_or_nothing(
    kernel: KernelDriver, server: StandInServer
) -> None:
    for flag, sent in [("--think", True), ("--no-think", False), ("--think-level high", "high")]:
        assert run_cell(kernel, f"stand-in-think {flag}").status == "ok", flag
        assert server.last.body["think"] == sent, flag
    assert run_cell(kernel, "stand-in-think").status == "ok"
    assert "think" not in server.last.body  # the server decides
    before = len(server.requests)
    for line in ["--think --no-think", "--think --think-level low", "--think-level loud"]:
        cell = run_cell(kernel, f"stand-in-think {line}")
        assert cell.ename == "UsageError", line
        assert "--think" in cell.error_text() or "level" in cell.error_text()
    assert len(server.requests) == before  # nothing was sent


def test_keep_alive_numbers_and_durations(kernel: KernelDriver, server: StandInServer) -> None:
    for value, sent in [("10m", "10m"), ("1h", "1h"), ("30s", "30s"), ("0", 0), ("-1", -1),
                        ("300", 300), ("1.5", 1.5)]:  # fmt: skip
        assert run_cell(kernel, f"stand-in --keep-alive {value}").status == "ok", value
        assert server.last.body["keep_alive"] == sent, value
    assert run_cell(kernel, "stand-in").status == "ok"
    assert "keep_alive" not in server.last.body
    for bad in ["soon", "10x", "''", "1e9"]:
        cell = run_cell(kernel, f"stand-in --keep-alive {bad}")
        assert cell.ename == "UsageError" and "--keep-alive takes" in cell.error_text(), bad
    kernel.ok("%config OllamaMagics.keep_alive = '5m'")
    try:
        assert run_cell(kernel, "stand-in").status == "ok"
        assert server.last.body["keep_alive"] == "5m"
        assert run_cell(kernel, "stand-in --keep-alive 0").status == "ok"
        assert server.last.body["keep_alive"] == 0
        bad = kernel.run("%config OllamaMagics.keep_alive = 'later'")
        assert "--keep-alive takes" in bad.stream_text("stderr")
    finally:
        kernel.ok("%config OllamaMagics.keep_alive = None")


def test_no_vars_sends_the_body_as_written(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("name = 'Ada'")
    assert run_cell(kernel, "stand-in", "Hi {name}.").status == "ok"
    assert server.last.body["prompt"] == "Hi Ada."
    cell = run_cell(kernel, "stand-in", "Hi {undefined}.")
    assert cell.ename == "UsageError" and "undefined" in cell.error_text()
    assert run_cell(kernel, "stand-in --no-vars", "Hi {name}, {undefined}.").status == "ok"
    assert server.last.body["prompt"] == "Hi {name}, {undefined}."
    kernel.ok("%config OllamaMagics.variables = False")
    try:
        assert run_cell(kernel, "stand-in", "Hi {name}.").status == "ok"
        assert server.last.body["prompt"] == "Hi {name}."
        assert kernel.value("_ollama.prompt") == "Hi {name}."
    finally:
        kernel.ok("%config OllamaMagics.variables = True")


def test_show_and_unload(kernel: KernelDriver, server: StandInServer) -> None:
    shown = out_text(kernel.ok("%ollama show stand-in-think"))
    for word in ["family", "stand-in", "parameters", "quantization", "context length",
                 "capabilities", "completion, thinking", "license"]:  # fmt: skip
        assert word in shown, shown
    assert server.last.path == "/api/show" and server.last.body == {"model": "stand-in-think"}
    assert_one_line_error(kernel.run("%ollama show no-such-model"), "OllamaModelNotFoundError")
    assert kernel.run("%ollama show").ename == "UsageError"

    assert run_cell(kernel, "stand-in").status == "ok"
    line = out_text(kernel.ok("%ollama unload stand-in"))
    assert line == "unloaded stand-in (it is no longer in memory)"
    body = server.last.body
    assert server.last.path == "/api/generate"
    assert body["prompt"] == "" and body["keep_alive"] == 0 and body["model"] == "stand-in"
    assert kernel.run("%ollama unload").ename == "UsageError"
