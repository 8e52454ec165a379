"""The live widget view in real kernels: Stop while the cell runs, the elapsed counter,
IOPub cost, and a headless run that leaves only static records.

A click is the shell `comm_msg` a browser sends; "the front end drew the view" is the
`_view_count` update a browser sends. Both on ipykernel 7.4 and 6.29.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from kernel_driver import WIDGET_MIME, Cell, KernelDriver
from nbclient import NotebookClient
from support import REPLY, assert_kept_what_arrived, result, run_cell

from ollama_nb.testing import StandInServer

SLOW = "-o standin_token_interval=0.05 -o standin_tokens=2000"


def start_slow_stream(kernel: KernelDriver, server: StandInServer, line: str = "") -> Cell:
    cell = kernel.submit(f"%%ollama stand-in {SLOW} {line}\nTalk for a long time.")
    record = server.wait_for_request("/api/generate", timeout=10)
    kernel.wait_for(lambda: record.chunks_sent >= 5, 10, "five chunks")
    return cell


def stop_button(kernel: KernelDriver, cell: Cell) -> str:
    msg = kernel.wait_for(lambda: cell.widget(description="Stop"), 5, "the Stop button")
    return msg.content["comm_id"]


@pytest.mark.parametrize("kernel_name", ["kernel", "k6_kernel"])
def test_stop_while_the_cell_runs(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    cell = start_slow_stream(kernel, server)
    record = server.last
    queued = kernel.submit("print('queued cell ran')")
    clicked = kernel.click(stop_button(kernel, cell))

    kernel.finish(cell, timeout=10)
    click_to_reply = cell.reply.at - clicked
    assert record.wait_closed(5)
    click_to_close = record.disconnected_at - clicked
    print(
        f"\n{kernel_name}: click→reply {click_to_reply * 1000:.0f} ms, click→server close"
        f" {click_to_close * 1000:.0f} ms"
    )
    assert cell.status == "ok"
    assert click_to_reply < 0.5 and click_to_close < 0.5
    assert record.chunks_after_disconnect == 0 and not record.completed

    kernel.finish(queued)
    assert queued.stream_text() == "queued cell ran\n"
    assert queued.reply.at > cell.reply.at  # in order
    r = result(kernel)
    assert r["done_reason"] == "stopped" and r["stopped"] and r["error"] is None
    # Partial text kept: what the server wrote before it saw the close.
    assert_kept_what_arrived(r["text"], record)
    (record_bundle,) = cell.records()
    assert "· stopped ·" in record_bundle["text/plain"]


def test_elapsed_counter_and_live_text(kernel: KernelDriver, server: StandInServer) -> None:
    cell = kernel.submit(f"%%ollama stand-in {SLOW}\nTalk.")
    label = kernel.wait_for(lambda: cell.widget(value="0.0 s"), 5, "the elapsed label")
    comm_id = label.content["comm_id"]
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.wait_for(lambda: kernel.messages[-1].at - cell.sent_at > 1.6, 5, "1.6 s")

    def values_until(seconds: float) -> list[str]:
        return [
            m.content["data"]["state"]["value"]
            for m in cell.updates_of(comm_id)
            if m.at - cell.sent_at <= seconds and "value" in m.content["data"].get("state", {})
        ]

    early = values_until(1.5)
    assert len(set(early)) >= 3, early
    assert all(v.endswith(" s") for v in early)
    kernel.click(stop_button(kernel, cell))
    kernel.finish(cell)
    # Once drawn, the answer streams as stream messages captured by the Output widget.
    live = cell.stream_text()
    assert live and result(kernel)["text"].startswith(live)


def test_headless_run_streams_no_text_and_leaves_one_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = run_cell(kernel, "stand-in")
    assert cell.stream_text() == ""  # no front end drew the view: nothing to stream to
    widget_displays = [d for d in cell.displays() if WIDGET_MIME in d]
    assert len(widget_displays) == 1 and set(widget_displays[0]) == {WIDGET_MIME}
    (record,) = cell.records()
    assert set(record) == {"text/html", "text/plain"}


def test_iopub_traffic_and_update_rate_at_full_speed(
    kernel: KernelDriver, server: StandInServer
) -> None:
    text = ("All work and no play makes a dull stream. " * 5000)[:200_000]
    server.configure(reply=text, token_interval=0)
    cell = kernel.submit("%%ollama stand-in\nGo.")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.finish(cell, timeout=60)
    assert cell.status == "ok", cell.error_text()
    assert result(kernel)["text"] == text
    after_start = [m for m in kernel.messages if m.channel == "iopub" and m.at >= cell.sent_at]
    own = [m for m in after_start if m.parent_id == cell.msg_id or m.type.startswith("comm")]
    total = sum(m.size() for m in own)
    print(f"\nIOPub for a {len(text)} B answer: {total} B in {len(own)} messages")
    assert total < 3 * len(text) + 64_000
    # Each view refresh moves the elapsed label once: count those on the wire.
    label = cell.widget(value="0.0 s").content["comm_id"]
    updates = len(cell.updates_of(label))
    seconds = cell.reply.at - cell.sent_at
    print(f"{updates} view updates in {seconds:.2f} s")
    assert updates <= 20 * seconds + 1, (updates, seconds)


def test_headless_notebook_run_saves_static_records(
    standin_server: StandInServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nbclient (no front end, no clicks) runs %%ollama cells to the end by itself."""
    standin_server.reset()
    monkeypatch.setenv("OLLAMA_HOST", standin_server.url)  # the kernel inherits it
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext ollama_nb"),
        nbformat.v4.new_code_cell("%%ollama stand-in -o standin_reply='Hello <b>there</b>.'\nHi."),
        nbformat.v4.new_code_cell("%%ollama stand-in\nAnd again."),
        nbformat.v4.new_code_cell("_ollama.done_reason"),
    ]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute(cwd=str(tmp_path))
    saved = tmp_path / "run.ipynb"
    nbformat.write(nb, saved)
    cells = json.loads(saved.read_text())["cells"]
    for cell in cells[1:3]:
        # The live view's place, emptied (nothing for nbval or a reader), then the record.
        emptied, output = cell["outputs"]
        assert emptied["output_type"] == "display_data" and emptied["data"] == {}
        assert output["output_type"] == "display_data"
        assert set(output["data"]) == {"text/html", "text/plain"}
        assert "stand-in · stop ·" in "".join(output["data"]["text/plain"])
    assert "Hello &lt;b&gt;there&lt;/b&gt;." in "".join(cells[1]["outputs"][1]["data"]["text/html"])
    assert "".join(cells[3]["outputs"][0]["data"]["text/plain"]) == "'stop'"
