"""`%%ollama` in a real ipykernel against the stand-in over real loopback HTTP.

What the user sees (the result in `_ollama`, the static record, the one-line error) and
what the server saw (the request, when the client hung up).
"""

from __future__ import annotations

import socket
import time

import pytest
from kernel_driver import KernelDriver
from support import (
    REPLY,
    assert_kept_what_arrived,
    assert_one_line_error,
    elapsed_of,
    result,
    run_cell,
    tokens,
)

from ollama_nb.testing import StandInServer, unresponsive_listener


def test_answer_streams_into_result_and_static_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = run_cell(kernel, "stand-in --out answer -o temperature=0 -o seed=7 --system 'Be brief.'")
    assert cell.status == "ok", cell.error_text()
    r = result(kernel)
    assert r["text"] == REPLY
    assert r["done_reason"] == "stop" and r["error"] is None and not r["stopped"]
    assert r["eval_count"] == len(tokens(REPLY))
    final = r["final"]
    assert r["tokens_per_second"] == pytest.approx(
        final["eval_count"] / final["eval_duration"] * 1e9
    )
    assert r["ttft"] is not None and 0 < r["ttft"] <= r["elapsed"]
    assert kernel.value("answer is _ollama and str(answer) == answer.text")
    body = server.last.body
    assert body["model"] == "stand-in" and body["prompt"] == "Say hello."
    assert body["system"] == "Be brief." and body["stream"] is True
    assert body["options"] == {"temperature": 0, "seed": 7}
    # The live view leaves a static record: the answer as HTML plus the status line.
    (record,) = cell.records()
    assert REPLY in record["text/html"] and REPLY in record["text/plain"]
    assert f"stand-in · stop · {len(tokens(REPLY))} tokens · " in record["text/plain"]
    # ...in place of the live view, whose display is emptied (nothing else of the cell is).
    assert not any(m.type == "clear_output" for m in cell.messages)
    assert any(m.type == "update_display_data" and m.content["data"] == {} for m in cell.messages)


def test_a_request_looks_up_no_module(kernel: KernelDriver, server: StandInServer) -> None:
    """Once the extension is warm, a request imports nothing. A failed import is not
    cached: httpcore asks for sniffio several times per request, and without it each ask
    searched sys.path again (~1.7 ms of CPU per request, the most of a short request)."""
    run_cell(kernel, "stand-in")  # warm: lazy imports of a first request are fine
    kernel.ok(
        "class _Lookups:\n"
        "    names = []\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        self.names.append(name)\n"
        "import sys; sys.meta_path.insert(0, _Lookups())"
    )
    try:
        for line in ("stand-in", "stand-in --chat", "stand-in --format json"):
            server.configure(reply='{"a": 1}')
            assert run_cell(kernel, line).status == "ok"
    finally:
        looked_up = kernel.value(
            "[sys.meta_path.remove(f) or f.names for f in list(sys.meta_path)"
            " if type(f).__name__ == '_Lookups'][0]"
        )
        kernel.ok("%ollama reset")
    assert looked_up == []


def test_model_and_host_come_from_config_when_not_on_the_line(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("%config OllamaMagics.model = 'stand-in'")
    try:
        cell = run_cell(kernel, "")
        assert cell.status == "ok", cell.error_text()
        assert server.last.body["model"] == "stand-in"
    finally:
        kernel.ok("%config OllamaMagics.model = None")


def test_no_model_anywhere_lists_the_servers_models(
    kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(kernel, "")
    assert cell.status == "error"
    text = cell.error_text()
    assert "no model given" in text and "stand-in:latest" in text
    assert [r.path for r in server.requests] == ["/api/tags"]


def test_usage_errors_send_nothing(kernel: KernelDriver, server: StandInServer) -> None:
    for line in [
        "stand-in --timeout -3",
        "stand-in --nope",
        "stand-in --system 'open",
        "stand-in --retries x",
    ]:
        cell = run_cell(kernel, line)
        assert cell.status == "error" and cell.ename == "UsageError", cell.error_text()
        assert cell.error_text().startswith("UsageError: %%ollama: ")
        assert cell.displays() == []
    cell = run_cell(kernel, "stand-in", "Tell me about {undefined_name}.")
    assert "'undefined_name' is not defined" in cell.error_text()
    assert server.requests == []


def test_prompt_takes_notebook_variables(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("topic = 'NDJSON'")
    cell = run_cell(kernel, "stand-in", "Explain {topic} in {{one}} line.")
    assert cell.status == "ok", cell.error_text()
    assert server.last.body["prompt"] == "Explain NDJSON in {one} line."


def test_connect_timeout(kernel: KernelDriver) -> None:
    with unresponsive_listener() as url:
        cell = run_cell(kernel, f"stand-in --host {url} --connect-timeout 1 --retries 0")
    took = elapsed_of(cell)
    assert_one_line_error(cell, "OllamaTimeoutError", "connect timeout", url)
    print(f"\nconnect timeout T=1 s: cell ended after {took:.3f} s")
    assert 1.0 <= took <= 2.0, took
    r = result(kernel)
    assert (r["done_reason"], r["kind"], r["timeout_kind"]) == ("timeout", "connect", "connect")


def test_read_timeout_before_the_first_chunk(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(first_chunk_delay=30)
    cell = run_cell(kernel, "stand-in --read-timeout 1")
    took = elapsed_of(cell)
    assert_one_line_error(cell, "OllamaTimeoutError", "read timeout", "1 s")
    print(f"\nread timeout before the first chunk, T=1 s: cell ended after {took:.3f} s")
    assert 1.0 <= took <= 2.0, took
    r = result(kernel)
    assert (r["done_reason"], r["kind"], r["text"]) == ("timeout", "read", "")
    record = server.last
    assert record.wait_closed(2) and record.disconnected_at is not None
    assert record.first_byte_at is None


def test_read_timeout_between_chunks_keeps_the_text(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY, stall_after=3)
    cell = run_cell(kernel, "stand-in --read-timeout 1")
    took = elapsed_of(cell)
    assert_one_line_error(cell, "OllamaTimeoutError", "read timeout")
    print(f"\nread timeout between chunks, T=1 s: cell ended after {took:.3f} s")
    assert 1.0 <= took <= 2.0, took
    r = result(kernel)
    assert r["kind"] == "read" and r["text"] == "".join(tokens(REPLY)[:3])
    record = server.last
    assert record.wait_closed(2) and record.disconnected_at is not None
    assert record.chunks_after_disconnect == 0
    assert r["text"] in cell.records()[0]["text/plain"]


def test_total_timeout_under_a_trickle(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(token_interval=0.2, tokens=1000)
    cell = run_cell(kernel, "stand-in --read-timeout 1 --timeout 1.5")
    took = elapsed_of(cell)
    assert_one_line_error(cell, "OllamaTimeoutError", "total timeout", "1.5 s")
    print(f"\ntotal timeout under a trickle, T=1.5 s: cell ended after {took:.3f} s")
    assert 1.5 <= took <= 2.5, took
    r = result(kernel)
    assert r["kind"] == "total" and r["text"].startswith("[stand-in] ")
    record = server.last
    assert record.wait_closed(2) and record.disconnected_at is not None
    assert record.chunks_after_disconnect == 0
    assert_kept_what_arrived(r["text"], record)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down(kernel: KernelDriver) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    cell = run_cell(kernel, f"stand-in --host {url} --retries 2")
    assert_one_line_error(cell, "OllamaConnectionError", url, "ollama serve", "3 attempts")
    # Two retries back off 0.25 s then 0.5 s, no more.
    assert 0.75 <= time.monotonic() - start < 5
    assert result(kernel)["done_reason"] == "error"


def test_unknown_model(kernel: KernelDriver, server: StandInServer) -> None:
    cell = run_cell(kernel, "no-such-model")
    assert_one_line_error(cell, "OllamaModelNotFoundError", "ollama pull no-such-model")
    assert result(kernel)["status_code"] == 404


def test_http_500(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(status=500, error="out of memory")
    cell = run_cell(kernel, "stand-in")
    assert_one_line_error(cell, "OllamaResponseError", "HTTP 500", "out of memory")
    assert result(kernel)["status_code"] == 500


def test_error_line_mid_stream_keeps_the_text(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=REPLY, error_after=4, error="runner crashed")
    cell = run_cell(kernel, "stand-in")
    assert_one_line_error(cell, "OllamaResponseError", "runner crashed")
    r = result(kernel)
    assert r["status_code"] == -1 and r["text"] == "".join(tokens(REPLY)[:4])


def test_malformed_line(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=REPLY, malformed_after=2)
    cell = run_cell(kernel, "stand-in")
    assert_one_line_error(cell, "OllamaResponseError", "not NDJSON")
    assert result(kernel)["text"] == "".join(tokens(REPLY)[:2])


def test_dropped_connection_keeps_the_text(kernel: KernelDriver, server: StandInServer) -> None:
    server.configure(reply=REPLY, drop_after=5)
    cell = run_cell(kernel, "stand-in")
    assert_one_line_error(cell, "OllamaConnectionError", "closed the connection")
    assert result(kernel)["text"] == "".join(tokens(REPLY)[:5])


def test_utf8_split_across_reads(kernel: KernelDriver, server: StandInServer) -> None:
    text = "Grüße aus Köln 🌍 — 東京 ñandú 🎉 fin."
    server.configure(reply=text, split_utf8=True)
    cell = run_cell(kernel, "stand-in")
    assert cell.status == "ok", cell.error_text()
    assert result(kernel)["text"] == text


@pytest.mark.parametrize("kernel_name", ["kernel", "k6_kernel"])
def test_interrupt_closes_the_response(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    server.configure(token_interval=0.1, tokens=500)
    cell = kernel.submit("%%ollama stand-in\nTalk for a long time.")
    record = server.wait_for_request("/api/generate", timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 3, 10, "three chunks")
    sent = kernel.interrupt()
    assert record.wait_closed(5)
    assert record.disconnected_at is not None and record.disconnected_at - sent < 1.0
    assert record.chunks_after_disconnect == 0
    kernel.finish(cell)
    assert cell.status == "error"  # re-raised, so Run All stops here
    assert cell.error()["traceback"] == [
        "KeyboardInterrupt: the request was interrupted; the text so far is in _ollama.text"
    ]
    r = result(kernel)
    assert r["done_reason"] == "interrupted" and r["text"].startswith("[stand-in]")
    assert cell.records(), "the static record is shown for an interrupted request too"
    kernel.ok("1 + 1")  # and the kernel carries on


def test_autoawait_off_runs_the_synchronous_path(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY, stall_after=2)
    kernel.ok("%autoawait off")
    try:
        cell = run_cell(kernel, "stand-in --read-timeout 1")
        assert_one_line_error(cell, "OllamaTimeoutError", "read timeout")
        assert result(kernel)["text"] == "".join(tokens(REPLY)[:2])
        stop = cell.widget(description="Stop")
        assert stop is not None and stop.content["data"]["state"]["disabled"] is True
        assert cell.widget(
            value="Stop cannot reach a synchronous cell (%autoawait off): use Interrupt (■)"
        )
    finally:
        kernel.ok("%autoawait on")


def test_help_comes_from_the_option_declaration(kernel: KernelDriver) -> None:
    doc = kernel.value("get_ipython().find_cell_magic('ollama').__doc__")
    for option in (
        "--connect-timeout",
        "--read-timeout",
        "--timeout",
        "--retries",
        "-o KEY=VALUE",
        "--out",
    ):
        assert option in doc


def test_unload_and_reload(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("%unload_ext ollama_nb")
    try:
        assert kernel.value("get_ipython().find_cell_magic('ollama') is None")
        cell = run_cell(kernel, "stand-in")
        assert "ollama" in cell.error_text()  # UsageError: Cell magic `%%ollama` not found
        assert server.requests == []
    finally:
        kernel.ok("%load_ext ollama_nb")
    assert run_cell(kernel, "stand-in").status == "ok"


def test_line_expands_dollar_variables_like_any_magic(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok(f"where = {server.url!r}; wait = 7")
    cell = run_cell(kernel, "stand-in --host $where --read-timeout {wait * 2}")
    assert cell.status == "ok", cell.error_text()
    assert server.last.path == "/api/generate"


def test_version_says_plainly_when_the_server_is_the_stand_in(kernel: KernelDriver) -> None:
    cell = kernel.ok("%ollama version")
    (out,) = [m.content["data"]["text/plain"] for m in cell.messages if m.type == "execute_result"]
    assert "server 0.0.0-stand-in" in out
    assert "stand-in server: its answers are filler, not a model's" in out
