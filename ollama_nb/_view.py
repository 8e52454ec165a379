"""Views of a running request: a widget view for notebooks, plain text for terminals.

Both take the same calls from the stream driver (`start`, `update`, `finish`) on the
event loop that drives the request.

The widget view shows the answer as the record will: Markdown rendered by the same
renderer (`_render`, raw HTML inert, money left alone). It sends only what is new:
each finished Markdown block once, as a `text/html` display that an Output widget
captures (the front end draws and typesets it exactly as it draws the record), and the
open (last) block again at each refresh as the value of an HTML widget, styled with
the front end's own Markdown classes. The open block is cut once it reaches a few KB,
so IOPub bytes grow with the answer (plus a bounded amount per refresh), not with
answer x updates; one widget update per refresh, no capture switching.
It streams text only once a front end has drawn the view (`_view_count` > 0): a headless
run (nbclient, nbval) gets no live text, so what nbval collects (the static record; it
ignores a display that has only the widget mime type) equals what the saved notebook
holds. A synchronous cell (and any cell that a comm message cannot reach: its Stop is
disabled) never hears that report, so it streams at once, in widget state only: finished
blocks become HTML widgets of their own instead of displays, and those updates are
unrecorded (`CellOutput.comms_unrecorded`, as every view's widgets are made), so a
headless run still saves no widget state and no live text.
"""

from __future__ import annotations

import asyncio
import functools
import html
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

import ipywidgets as widgets

from ._highlight import CODE_CSS
from ._kernel import CellOutput
from ._pull import PullProgress
from ._render import (
    THINKING_CLASS,
    THINKING_CSS,
    LiveMarkdown,
    format_seconds,
    label_html,
    prompt_label,
    record_html,
)
from ._result import OllamaResult
from ._stream import StopControl, Transcript
from ._tables import human_bytes

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _tokens(n: int) -> str:
    return f"{n} token{'' if n == 1 else 's'}"


def unrecorded_widgets(method: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Runs a live view's method (which makes, updates or closes its widgets) under
    `CellOutput.comms_unrecorded`, so that a headless run saves no widget state: neither
    the dead models nor (for views that update undrawn) the state that updates carry."""

    @functools.wraps(method)
    def wrapped(self: Any, argument: Any) -> None:
        with self._out.comms_unrecorded():
            method(self, argument)

    return wrapped


class WidgetView:
    """Header (model · elapsed · tokens · Stop), collapsed thinking, streaming answer."""

    def __init__(
        self,
        output: CellOutput,
        control: StopControl,
        stop_hint: str | None,
        prompt: str | None = None,
    ) -> None:
        """`stop_hint` set means a click cannot reach this cell: the button is disabled.
        `prompt` set (the Python API's calls) heads the header and the status line."""
        self._label = prompt_label(prompt) if prompt else ""
        self._out = output
        self._control = control
        self._stop_hint = stop_hint
        self._capturing: widgets.Output | None = None
        self._transcript: Transcript | None = None  # the last one shown, for `_on_drawn`
        self._finished = False
        # No click reaches the running cell, so no report of the view being drawn will
        # either: stream without it (not under %%capture, where the view is not shown).
        self._undrawn = stop_hint is not None and not output.captured
        self.drawn = asyncio.Event()  # set when a front end reports it drew the view

    @unrecorded_widgets
    def start(self, model: str) -> None:
        layout, text_style = shared("layout"), shared("html-style")
        self._model = widgets.HTML(
            value=label_html(self._label) + html.escape(model), layout=layout, style=text_style
        )
        label_style = shared("label-style")
        self._elapsed = widgets.Label(
            value=format_seconds(0.0),
            layout=layout,
            style=label_style,
            _dom_classes=("ollama-nb-elapsed",),
        )
        self._count = widgets.Label(
            value=_tokens(0), layout=layout, style=label_style, _dom_classes=("ollama-nb-count",)
        )
        self._stop = stop_button(self._stop_hint, "Stop generating; the text so far is kept")
        self._stop.on_click(self._on_stop)
        header: list[widgets.Widget] = [self._model, self._elapsed, self._count, self._stop]
        if self._stop_hint:
            header.append(widgets.Label(value=self._stop_hint, layout=layout, style=label_style))
        header.append(shared("css"))
        self._thinking: _LivePart | None = None  # made when thinking first arrives
        self._context: widgets.Widget | None = None  # made by show_context
        self._tools: widgets.HTML | None = None  # made when the first tool call arrives
        self._tools_seen = 0  # the transcript's calls_version last shown
        self._answer = _LivePart("ollama-nb-live-answer", layout, text_style)
        self._root = widgets.VBox(
            [header_row(header), self._answer.box],
            layout=layout,
            _view_count=0,  # ask front ends to report when they draw the view
        )
        self._root.observe(self._on_drawn, names="_view_count")
        show_widget(self._out, self._root)

    def _thinking_part(self) -> _LivePart:
        """The collapsed thinking area, between the header and the answer."""
        if self._thinking is None:
            with self._out.comms_unrecorded():
                self._thinking = _LivePart(
                    "ollama-nb-live-thinking", shared("layout"), shared("html-style")
                )
                box = widgets.Accordion(
                    children=[self._thinking.box],
                    selected_index=None,
                    layout=shared("layout"),
                    _dom_classes=(THINKING_CLASS,),
                )
                box.set_title(0, "Thinking")
            self._above_answer(box)
        return self._thinking

    def _tools_part(self) -> widgets.HTML:
        """The tool calls (each `name(args)`, then its outcome), above the answer."""
        if self._tools is None:
            with self._out.comms_unrecorded():
                self._tools = widgets.HTML(layout=shared("layout"), style=shared("html-style"))
            self._above_answer(self._tools)
        return self._tools

    def _on_drawn(self, change: dict[str, Any]) -> None:
        """The front end drew the view: show the text that came meanwhile now, not at the
        next tick (at full speed the first chunk often arrives before the view is drawn)."""
        if change["new"]:
            self.drawn.set()
        if change["new"] and self._transcript is not None and not self._finished:
            self._transcript.flush()
            self.update(self._transcript)

    @property
    def shown(self) -> bool:
        return bool(self._root._view_count)

    def show_thumbnails(self, images: list[bytes]) -> None:
        """Hook for `_request`: the images sent, above the streaming answer (as in the record)."""
        from ._render import thumbnails_html

        with self._out.comms_unrecorded():
            shown = widgets.HTML(
                value=thumbnails_html(images), layout=shared("layout"), style=shared("html-style")
            )
        self._below_header(shown, after=self._context)

    def show_context(self, line: str) -> None:
        """Hook for `_request`: what --context attached, under the header (as in the record,
        so that nothing moves when the record replaces the view)."""
        from ._render import context_html

        with self._out.comms_unrecorded():
            self._context = widgets.HTML(
                value=context_html(line), layout=shared("layout"), style=shared("html-style")
            )
        self._below_header(self._context)

    def _above_answer(self, widget: widgets.Widget) -> None:
        *before, answer = self._root.children
        self._root.children = (*before, widget, answer)

    def _below_header(self, widget: widgets.Widget, after: widgets.Widget | None = None) -> None:
        header, *rest = self._root.children
        at = rest.index(after) + 1 if after in rest else 0
        self._root.children = (header, *rest[:at], widget, *rest[at:])

    async def confirm(self, call: Any) -> bool:
        """--confirm: show the call with Run and Skip; whether Run was clicked. Stop (or an
        interrupt) cancels the wait with the request."""
        decided: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._out.comms_unrecorded():
            label = widgets.HTML(
                value=f"Run <code>{html.escape(call.shown())}</code>?",
                layout=shared("layout"),
                style=shared("html-style"),
            )
            run = widgets.Button(description="Run", button_style="success", layout=shared("layout"))
            skip = widgets.Button(description="Skip", layout=shared("layout"))
            box = widgets.HBox([label, run, skip], layout=shared("row"))

        def choose(value: bool) -> None:
            if not decided.done():
                decided.set_result(value)

        run.on_click(lambda _b: choose(True))
        skip.on_click(lambda _b: choose(False))
        self._above_answer(box)
        try:
            return await decided
        finally:
            self._root.children = tuple(c for c in self._root.children if c is not box)
            _close_tree(box)

    def _on_stop(self, _button: widgets.Button) -> None:
        self._stop.disabled = True
        self._control.stop()

    def update(self, transcript: Transcript) -> None:
        self._transcript = transcript
        if self.shown:
            self._refresh(transcript)
        elif self._undrawn:
            # Streamed before any front end reported it: a headless runner must not see it
            # (nbclient saves the state that updates carry).
            with self._out.comms_unrecorded():
                self._refresh(transcript)
        # Else nobody sees it yet. (A headless runner, which never draws it, then records
        # no widget state at all.)

    def _refresh(self, transcript: Transcript) -> None:
        self._elapsed.value = format_seconds(transcript.elapsed())
        self._count.value = _tokens(transcript.chunks)
        if len(transcript.thinking) > (self._thinking.seen if self._thinking else 0):
            self._send(self._thinking_part(), transcript.thinking)
        if transcript.calls_version != self._tools_seen:
            self._tools_seen = transcript.calls_version
            self._tools_part().value = tool_calls_html(transcript.calls)
        self._send(self._answer, transcript.answer)

    def _send(self, part: _LivePart, parts: list[str]) -> None:
        if len(parts) == part.seen:
            return
        finished, open_html = part.markdown.add("".join(parts[part.seen :]))
        part.seen = len(parts)
        if finished and not self.shown:  # streaming undrawn: no display, no capture
            part.add_block(finished)
        elif finished:
            self._capture(part.done)
            self._out.display({"text/html": finished})
        part.show_open(open_html)

    def _capture(self, target: widgets.Output | None) -> None:
        """Point the cell's stream output at one Output widget (front ends apply it in order)."""
        if self._capturing is target:
            return
        if self._capturing is not None:
            self._capturing.msg_id = ""
        if target is not None:
            target.msg_id = self._out.msg_id
        self._capturing = target

    def finish(self, result: OllamaResult) -> None:
        """Swap the live view for the static record, touching no other output of the cell
        (a loop of requests keeps one record each): the live view's display becomes empty
        and the record is a new display after it. nbval (which ignores display updates and
        widget-only displays) then collects exactly what a saved notebook holds."""
        self._finished = True
        if not hasattr(self, "_root"):  # never started (a replayed answer): the record only
            self._out.display(*result.record_bundle())
            return
        # The widgets are in reference cycles (observers, comm callbacks) that hold this
        # view until a garbage collection: it must not hold the answer's parts meanwhile,
        # or a big answer's copy outlives the heap trim that follows it.
        self._transcript = None
        self._capture(None)
        data, metadata = result.record_bundle()
        if self._label:
            data = {**data, "text/html": record_html(result, self._label)}
        live = widget_display_id(self._root)
        self._out.update(live, {})
        self._out.display(data, metadata)
        if self._out.cell_ended and not self.shown:
            # A --background request in a headless run: its cell's messages are no longer
            # read; this puts the record in place of the live view in the saved file.
            self._out.update_elsewhere(live, data, metadata)
        _close_tree(self._root)


RUNNING_HINT = "running; Interrupt (■) ends it"


def tool_calls_html(calls: list[Any]) -> str:
    """The live list of tool calls: each `name(args)` and its outcome, or that it runs."""
    items = []
    for call in calls:
        outcome = RUNNING_HINT if call.state == "running" else call.outcome()
        if call.state == "asking":
            outcome = "waiting for Run / Skip"
        elif call.state == "pending" and call.result is None and call.error is None:
            outcome = ""
        items.append(f"<li><code>{html.escape(call.shown())}</code> {html.escape(outcome)}</li>")
    return f'<ol class="ollama-nb-live-tools" style="margin: 0.2em 0">{"".join(items)}</ol>'


def widget_display_id(root: widgets.Widget) -> str:
    """The display id of a live view's output, so that it can be emptied in place."""
    return f"ollama-nb-{root.model_id}"


OPEN_CLASSES = "jp-RenderedHTMLCommon jp-RenderedHTML ollama-nb-open"
BLOCK_CHARS = 8192  # finished HTML per widget when a view streams undrawn


class _LivePart:
    """One streaming text (answer or thinking): finished blocks, then the open block."""

    def __init__(self, dom_class: str, layout: widgets.Layout, style: widgets.Widget) -> None:
        self.done = widgets.Output(layout=layout)
        self.open = widgets.HTML(layout=layout, style=style)
        self.box = widgets.VBox([self.done, self.open], layout=layout, _dom_classes=(dom_class,))
        self.markdown = LiveMarkdown()
        self.seen = 0  # transcript parts already rendered
        self._block: widgets.HTML | None = None  # the last widget of finished blocks
        self._block_html = ""

    def add_block(self, finished_html: str) -> None:
        """Finished blocks as HTML widgets, above the open block (where a display captured
        by the Output widget would be recorded by a headless run). A widget takes blocks
        up to `BLOCK_CHARS`, then the next one begins: few widgets, bounded updates."""
        if self._block is not None and len(self._block_html) + len(finished_html) <= BLOCK_CHARS:
            self._block_html += finished_html
            self._block.value = _styled(self._block_html)
            return
        self._block_html = finished_html
        self._block = widgets.HTML(
            value=_styled(finished_html), layout=self.open.layout, style=self.open.style
        )
        *before, last = self.box.children
        self.box.children = (*before, self._block, last)

    def show_open(self, open_html: str) -> None:
        # The classes JupyterLab and Notebook 7 give a rendered HTML output, so the open
        # block has the record's font, size and spacing; the padding matches the
        # output area's around the finished blocks above it.
        value = _styled(open_html) if open_html else ""
        if value != self.open.value:
            self.open.value = value


def _styled(block_html: str) -> str:
    return f'<div class="{OPEN_CLASSES}">{block_html}</div>'


def stop_button(hint: str | None, tooltip: str) -> widgets.Button:
    """Described exactly "Stop". Where a click cannot reach the running cell (`hint` says
    why), it is disabled and says so instead of pretending."""
    return widgets.Button(
        layout=shared("layout"),
        style=shared("button-style"),
        description="Stop",
        icon="stop",  # ■, drawn outlined and compact by `LIVE_CSS`
        _dom_classes=("ollama-nb-stop",),
        disabled=hint is not None,
        tooltip=hint or tooltip,
    )


def header_row(children: list[widgets.Widget]) -> widgets.HBox:
    """A live view's header: one muted line as tall as the record's status line."""
    return widgets.HBox(children, layout=shared("row"), _dom_classes=("ollama-nb-header",))


def show_widget(output: CellOutput, root: widgets.Widget) -> None:
    # Only the widget mime type: nbval skips such a display, so nothing unstable (a
    # widget's text/plain repr) is compared, and the static record replaces it anyway.
    output.display(
        {WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": root.model_id}},
        display_id=widget_display_id(root),
    )


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        if not is_shared(child):  # the stylesheet, which later views show too
            _close_tree(child)
    # `layout` and `style` are widgets of their own, each with a comm: close them too,
    # but for the shared ones, which later views use.
    for part in ("layout", "style"):
        model = getattr(widget, part, None)
        if isinstance(model, widgets.Widget) and not is_shared(model):
            model.close()
    widget.close()


# Layouts and styles that all live views use: one of each per kernel, never closed. Each
# is a widget with a comm of its own (opened with ~1-1.6 KB of state, closed with ~0.5 KB,
# ~0.5 ms of kernel CPU each way); made per view they were 5 of its 14 widgets.
_SHARED: dict[str, widgets.Widget] = {}


def _style_of(kind: type[widgets.Widget]) -> widgets.Widget:
    # The style class a widget class makes for itself (it differs between ipywidgets 7
    # and 8: DescriptionStyle there, HTMLStyle / LabelStyle here).
    return kind.class_traits()["style"].klass()  # type: ignore[no-any-return]


# The live views' stylesheet: a calm header (muted text, `·` between its parts as in the
# status line, counters in tabular figures of a fixed width, so that Stop does not move),
# a compact outlined Stop that turns red on hover, thinking that looks like the record's
# <details>, and code colours; 24px: `_render.ROW_HEIGHT`. Classes of ipywidgets 8
# (JupyterLab 4, Notebook 7) and 7.
LIVE_CSS = (
    ".ollama-nb-header {height: 24px; margin: 0 0 4px 0; align-items: center;"
    " overflow: hidden; font-size: var(--jp-ui-font-size1, 13px)}"
    ".ollama-nb-header > .widget-html, .ollama-nb-header > .widget-label {height: 24px;"
    " line-height: 24px; margin: 0; color: var(--jp-ui-font-color2, #666);"
    " font-size: var(--jp-ui-font-size1, 13px); font-variant-numeric: tabular-nums;"
    " white-space: nowrap; flex: none; width: auto}"
    ".ollama-nb-header > .widget-html .widget-html-content {height: 24px;"
    " line-height: 24px; font-size: inherit; color: inherit}"
    ".ollama-nb-header > .widget-label::before {content: '\\00b7'; padding: 0 0.4em}"
    # A counter's slot: its separator on the left, its value on the right.
    ".ollama-nb-header > .ollama-nb-elapsed, .ollama-nb-header > .ollama-nb-count"
    " {display: flex; justify-content: space-between}"
    ".ollama-nb-header > .ollama-nb-elapsed {min-width: 5.2em}"
    ".ollama-nb-header > .ollama-nb-count {min-width: 7.4em}"
    ".ollama-nb-header > .ollama-nb-progress {min-width: min(50em, 100% - 7em)}"
    # The answer where the record will have it: flush left (no widget margin), and tables
    # at the left as in an output area (the open block is not one: Jupyter centres them).
    ".ollama-nb-live-answer > .jupyter-widgets, .ollama-nb-live-thinking > .jupyter-widgets"
    " {margin: 0}"
    ".ollama-nb-open table {margin-left: 0; margin-right: 0}"
    ".ollama-nb-stop.jupyter-button {width: auto; height: 22px; line-height: 20px;"
    " padding: 0 8px; margin: 0 6px 0 4px; flex: none; background: transparent;"
    " color: var(--jp-ui-font-color1, #333);"
    " border: 1px solid var(--jp-border-color1, #bdbdbd);"
    " border-radius: 3px; box-shadow: none; font-size: var(--jp-ui-font-size1, 13px)}"
    ".ollama-nb-stop.jupyter-button:hover:enabled {color: var(--jp-error-color1, #d32f2f);"
    " border-color: var(--jp-error-color1, #d32f2f); background: transparent;"
    " box-shadow: none}"
    ".ollama-nb-stop.jupyter-button i.fa {font-size: 0.75em; margin-right: 4px}"
    ".ollama-nb-stop.jupyter-button:disabled {opacity: 0.5}"
    ".ollama-nb-thinking-box.widget-accordion, .ollama-nb-thinking-box .jupyter-widget-Collapse,"
    " .ollama-nb-thinking-box .p-Collapse {margin: 0; border: none; background: none}"
    ".ollama-nb-thinking-box .jupyter-widget-Collapse-header,"
    " .ollama-nb-thinking-box .p-Collapse-header"
    " {padding: 0; border: none; background: none; color: var(--jp-ui-font-color2, #666);"
    " font-size: var(--jp-ui-font-size1, 13px); line-height: 24px; height: 24px;"
    " font-weight: normal; font-family: var(--jp-ui-font-family, sans-serif)}"
    ".ollama-nb-thinking-box .jupyter-widget-Collapse-header > i,"
    " .ollama-nb-thinking-box .p-Collapse-header > i {display: none}"
    ".ollama-nb-thinking-box .jupyter-widget-Collapse-contents,"
    " .ollama-nb-thinking-box .p-Collapse-contents"
    " {padding: 0; border: none; background: none}"
)


def _stylesheet() -> widgets.Widget:
    # An HTML widget that holds a <style>, shown (hidden) in each live view: a <style>
    # applies wherever it is in the page, and one shared model costs a view nothing.
    style = f"<style>{LIVE_CSS}{CODE_CSS}{THINKING_CSS}</style>"
    return widgets.HTML(value=style, layout=shared("hidden"), style=shared("html-style"))


_MAKE_SHARED: dict[str, Callable[[], widgets.Widget]] = {
    "layout": widgets.Layout,
    "row": lambda: widgets.Layout(align_items="center"),  # a header's items on one line
    "html-style": lambda: _style_of(widgets.HTML),
    "label-style": lambda: _style_of(widgets.Label),
    "button-style": lambda: _style_of(widgets.Button),
    "hidden": lambda: widgets.Layout(display="none"),
    "css": _stylesheet,
}


def shared(name: str) -> widgets.Widget:
    """The shared layout or style `name`, made anew if user code closed it (for instance
    with `Widget.close_all()`): a view must never refer to a closed model."""
    model = _SHARED.get(name)
    if model is None or model.comm is None:
        model = _SHARED[name] = _MAKE_SHARED[name]()
    return model


def shared_models() -> list[widgets.Widget]:
    return list(_SHARED.values())


def is_shared(model: widgets.Widget) -> bool:
    return any(model is made for made in _SHARED.values())


# What a terminal would act on rather than print: escape sequences (CSI, the OSC/DCS/PM/
# APC/SOS strings that set a window title or the clipboard, two-byte escapes, and their
# 8-bit C1 forms) are dropped whole; any other control character (C0 but tab and newline,
# DEL, C1) is dropped alone, so a sequence cut between two chunks shows as inert text.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` with nothing a terminal would interpret: printable text, tabs, newlines."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


class TextView:
    """Terminal IPython: the answer streams to a text stream, then the status line.
    The model's text is written through `terminal_safe`: it cannot retitle the window,
    set the clipboard (OSC 52) or move the cursor."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._parts = {"answer": 0, "thinking": 0}  # parts of each already written
        self._chars = 0  # answer characters already written
        self._calls: dict[int, str] = {}  # tool call -> the last line written for it

    def start(self, model: str) -> None:
        self._write(f"[{model}]\n")

    def update(self, transcript: Transcript) -> None:
        thinking = self._take("thinking", transcript.thinking)
        if thinking:
            self._write(thinking)
        for i, call in enumerate(transcript.calls):
            outcome = "running; Ctrl-C ends it" if call.state == "running" else call.outcome()
            if call.state == "pending":
                outcome = ""
            line = f"[tool] {call.shown()} {outcome}".rstrip()
            if self._calls.get(i) != line:
                self._calls[i] = line
                self._write(line + "\n")
        answer = self._take("answer", transcript.answer)
        if answer:
            if self._parts["thinking"] and not self._chars:
                self._write("\n\n")  # thinking streamed first: set the answer apart
            self._chars += len(answer)
            self._write(answer)

    def _take(self, key: str, parts: list[str]) -> str:
        start, end = self._parts[key], len(parts)
        self._parts[key] = end
        return "".join(parts[start:end])

    def finish(self, result: OllamaResult) -> None:
        # Chunks may have arrived after the last refresh: write what is still missing.
        self._write(result.text[self._chars :])
        self._write(f"\n{result.status}\n")
        if result.code_note:  # --code: where the code went
            self._write(f"{result.code_note}\n")

    def _write(self, text: str) -> None:
        self._stream.write(terminal_safe(text))
        self._stream.flush()


class WidgetPullView:
    """`%ollama pull`: a progress bar with bytes, percent and rate, and a Stop button."""

    def __init__(self, output: CellOutput, control: StopControl, stop_hint: str | None) -> None:
        self._out = output
        self._control = control
        self._stop_hint = stop_hint

    @unrecorded_widgets
    def start(self, progress: PullProgress) -> None:
        self._bar = widgets.FloatProgress(value=0.0, min=0.0, max=100.0, description="pull")
        self._label = widgets.Label(value=f"{progress.model}: {progress.line()}")
        self._stop = stop_button(self._stop_hint, "Stop the pull; pulling again resumes it")
        self._stop.on_click(lambda _button: self._control.stop())
        self._root = widgets.HBox([self._bar, self._label, self._stop])
        show_widget(self._out, self._root)

    @unrecorded_widgets
    def update(self, progress: PullProgress) -> None:
        if progress.total:
            self._bar.value = 100 * progress.completed / progress.total
        self._label.value = f"{progress.model}: {progress.line()}"

    @unrecorded_widgets
    def finish(self, progress: PullProgress) -> None:
        self._out.clear()
        self._out.display({"text/plain": pull_summary(progress)})
        _close_tree(self._root)


class TextPullView:
    """Terminal IPython: one line per status change."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._status = ""

    def start(self, progress: PullProgress) -> None:
        self.update(progress)

    def update(self, progress: PullProgress) -> None:
        if progress.status != self._status:
            self._status = progress.status
            self._stream.write(f"{progress.model}: {progress.line()}\n")
            self._stream.flush()

    def finish(self, progress: PullProgress) -> None:
        self._stream.write(pull_summary(progress) + "\n")
        self._stream.flush()


def pull_summary(progress: PullProgress) -> str:
    if progress.outcome == "success":
        return f"pulled {progress.model} ({human_bytes(progress.total)})"
    done = f"{progress.completed / progress.total:.0%}" if progress.total else "nothing"
    if progress.outcome in ("stopped", "interrupted"):
        return (
            f"{progress.outcome}: {progress.model} pull at {done};"
            f" %ollama pull {progress.model} resumes it"
        )
    return f"pull of {progress.model} failed at {done}: {progress.outcome}"
