"""Synchronous cells stream: `ollama_nb.generate` in a plain cell, `%%ollama` under
`%%time` or `%autoawait off` show the text and the counter as they arrive, although no
front end can report (to a blocked kernel) that it drew the view. Read on IOPub by the
driver, which never sends that report; every widget message of the view is unrecorded,
so a headless run saves no widget state (see test_headless_saves.py)."""

from __future__ import annotations

import pytest
from kernel_driver import WIDGET_MIME, Cell, KernelDriver, Msg

from ollama_nb.testing import StandInServer

VIEW_SUFFIX = "/ollama-nb-view"
HINTS = (
    "Stop cannot reach a synchronous cell: use Interrupt (■), or await agenerate(...)",
    "Stop cannot reach a synchronous cell (%autoawait off): use Interrupt (■)",
)
# Each synchronous way to ask, and what the cell needs first.
CELLS = {
    "generate": ("", "import ollama_nb\nr = ollama_nb.generate('Talk.', model='stand-in')"),
    "%%time": ("", "%%time\n%%ollama stand-in\nTalk."),
    "autoawait off": ("%autoawait off", "%%ollama stand-in\nTalk."),
}


def record_at(cell: Cell) -> float:
    """When the static record (the answer's end) was displayed."""
    return min(
        m.at
        for m in cell.messages
        if m.type == "display_data" and m.content["data"] and WIDGET_MIME not in m.content["data"]
    )


def view_updates(kernel: KernelDriver, cell: Cell) -> list[Msg]:
    """The state updates of the cell's live-view widgets, in order."""
    comms = {m.content["comm_id"] for m in cell.comm_opens()}
    return [
        m
        for m in kernel.messages
        if m.type == "comm_msg" and m.content["comm_id"] in comms and "state" in m.content["data"]
    ]


def values_before_the_end(updates: list[Msg], comm_id: str, end: float) -> list[str]:
    return [
        m.content["data"]["state"]["value"]
        for m in updates
        if m.content["comm_id"] == comm_id and m.at < end and "value" in m.content["data"]["state"]
    ]


def assert_streamed_live(kernel: KernelDriver, cell: Cell) -> None:
    assert cell.status == "ok", cell.error_text()
    end = record_at(cell)
    updates = view_updates(kernel, cell)
    counter = cell.widget(value="0 tokens")
    clock = cell.widget(value="0.0 s")
    assert counter is not None and clock is not None
    counts = values_before_the_end(updates, counter.content["comm_id"], end)
    times = values_before_the_end(updates, clock.content["comm_id"], end)
    assert len(set(counts)) >= 3, counts  # the counter moved while the answer streamed
    assert len(set(times)) >= 3, times
    texts = [
        m.content["data"]["state"]["value"]
        for m in updates
        if m.at < end and "ollama-nb-open" in str(m.content["data"]["state"].get("value", ""))
    ]
    assert len(texts) >= 3 and len(texts[-1]) > len(texts[0]), texts  # the text grew
    stop = cell.widget(description="Stop")
    assert stop is not None and stop.content["data"]["state"]["disabled"] is True
    assert any(cell.widget(value=hint) for hint in HINTS)  # and says why
    # Headless runners read only the cell's own messages: none of these is.
    assert all(m.parent_id == cell.msg_id + VIEW_SUFFIX for m in updates)


@pytest.mark.parametrize(
    "kernel_name, how",
    [
        ("kernel", "generate"),
        ("kernel", "%%time"),
        ("kernel", "autoawait off"),
        ("k6_kernel", "generate"),
        ("k6_kernel", "%%time"),
        ("k6_kernel", "autoawait off"),
        ("colab_kernel", "generate"),
        ("colab_kernel", "%%time"),
        ("colab_kernel", "autoawait off"),
    ],
)
def test_a_synchronous_cell_streams_text_and_counter(
    kernel_name: str, how: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(kernel_name)
    server.configure(token_interval=0.05, tokens=40)  # about 2 s
    setup, code = CELLS[how]
    if setup:
        kernel.ok(setup)
    try:
        cell = kernel.run(code)
    finally:
        kernel.ok("%autoawait on")
    assert_streamed_live(kernel, cell)


def test_capture_shows_no_live_view(kernel: KernelDriver, server: StandInServer) -> None:
    # %%capture keeps what the cell shows: a live view there would be a dead widget.
    server.configure(token_interval=0.02, tokens=20)
    cell = kernel.run("%%capture captured\n%%ollama stand-in\nTalk.")
    assert cell.status == "ok" and cell.displays() == []
    assert not [m for m in view_updates(kernel, cell) if m.at >= cell.sent_at]
    assert kernel.value("len(captured.outputs)") == 1  # the record


def test_a_long_answer_streamed_undrawn_takes_few_widgets(
    kernel: KernelDriver, server: StandInServer
) -> None:
    # Finished blocks go to HTML widgets (not displays), each holding blocks up to a few
    # KB: a 300-paragraph answer makes a handful of widgets, not one per refresh.
    reply = "\n\n".join(f"Paragraph {i} of the answer." for i in range(300))
    server.configure(reply=reply, token_interval=0.002)
    kernel.ok("%autoawait off")
    try:
        cell = kernel.run("%%ollama stand-in\nTalk.")
    finally:
        kernel.ok("%autoawait on")
    assert cell.status == "ok", cell.error_text()
    last: dict[str, str] = {}
    for m in [*cell.comm_opens(), *view_updates(kernel, cell)]:
        value = str(m.content["data"]["state"].get("value", ""))
        if "ollama-nb-open" in value:
            last[m.content["comm_id"]] = value
    shown = "".join(last.values())
    assert "Paragraph 0 of" in shown and "Paragraph 150 of" in shown
    assert len(last) <= 8, len(last)  # the open block and a few of finished blocks
    assert cell.displays()[-1]["text/plain"].startswith(reply[:40])  # then the record
