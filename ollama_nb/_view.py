"""Views of a running request: a widget view for notebooks, plain text for terminals.

Both take the same calls from the stream driver (`start`, `update`, `finish`) on the
event loop that drives the request.

The widget view sends only what is new: text goes out as `stream` messages that an
Output widget captures, so IOPub bytes grow with the answer, not with answer x updates.
It streams text only once a front end has drawn the view (`_view_count` > 0): a headless
run (nbclient, nbval) gets no live text, so what nbval collects (the static record; it
ignores a display that has only the widget mime type) equals what the saved notebook
holds. Live text is `stream` output, which front ends show as text, never as HTML.
"""

from __future__ import annotations

import html
import sys
from typing import TextIO

import ipywidgets as widgets

from ._kernel import CellOutput
from ._pull import PullProgress
from ._render import format_seconds
from ._result import OllamaResult
from ._stream import StopControl, Transcript
from ._tables import human_bytes

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _tokens(n: int) -> str:
    return f"{n} token{'' if n == 1 else 's'}"


class WidgetView:
    """Header (model · elapsed · tokens · Stop), collapsed thinking, streaming answer."""

    def __init__(self, output: CellOutput, control: StopControl, stop_hint: str | None) -> None:
        """`stop_hint` set means a click cannot reach this cell: the button is disabled."""
        self._out = output
        self._control = control
        self._stop_hint = stop_hint
        self._sent = {"answer": 0, "thinking": 0}  # parts of each already streamed
        self._capturing: widgets.Output | None = None

    def start(self, model: str) -> None:
        self._model = widgets.HTML(value=f"<b>{html.escape(model)}</b>")
        self._elapsed = widgets.Label(value=format_seconds(0.0))
        self._count = widgets.Label(value=_tokens(0))
        self._stop = stop_button(self._stop_hint, "Stop generating; the text so far is kept")
        self._stop.on_click(self._on_stop)
        header: list[widgets.Widget] = [self._model, self._elapsed, self._count, self._stop]
        if self._stop_hint:
            header.append(widgets.Label(value=self._stop_hint))
        self._thinking = widgets.Output()
        self._thinking_box = widgets.Accordion(children=[self._thinking], selected_index=None)
        self._thinking_box.set_title(0, "Thinking")
        self._thinking_box.layout.display = "none"
        self._answer = widgets.Output()
        self._root = widgets.VBox(
            [
                widgets.HBox(header, layout={"align_items": "center"}),
                self._thinking_box,
                self._answer,
            ],
            _view_count=0,  # ask front ends to report when they draw the view
        )
        show_widget(self._out, self._root)

    @property
    def shown(self) -> bool:
        return bool(self._root._view_count)

    def show_thumbnails(self, images: list[bytes]) -> None:
        """Hook for `_request`: the images sent, above the streaming answer (as in the record)."""
        from ._render import thumbnails_html

        header, *rest = self._root.children
        self._root.children = (header, widgets.HTML(value=thumbnails_html(images)), *rest)

    def _on_stop(self, _button: widgets.Button) -> None:
        self._stop.disabled = True
        self._control.stop()

    def update(self, transcript: Transcript) -> None:
        self._elapsed.value = format_seconds(transcript.elapsed())
        self._count.value = _tokens(transcript.chunks)
        if not self.shown:
            return
        if len(transcript.thinking) > self._sent["thinking"]:
            self._thinking_box.layout.display = ""
            self._send(self._thinking, "thinking", transcript.thinking)
        self._send(self._answer, "answer", transcript.answer)

    def _send(self, target: widgets.Output, key: str, parts: list[str]) -> None:
        end = len(parts)
        if end == self._sent[key]:
            return
        self._capture(target)
        self._out.stream("".join(parts[self._sent[key] : end]))
        self._sent[key] = end

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
        self._capture(None)
        self._out.clear()
        self._out.display(result._repr_mimebundle_())
        _close_tree(self._root)


def stop_button(hint: str | None, tooltip: str) -> widgets.Button:
    """Described exactly "Stop". Where a click cannot reach the running cell (`hint` says
    why), it is disabled and says so instead of pretending."""
    return widgets.Button(
        description="Stop",
        button_style="danger",
        icon="stop",
        disabled=hint is not None,
        tooltip=hint or tooltip,
    )


def show_widget(output: CellOutput, root: widgets.Widget) -> None:
    # Only the widget mime type: nbval skips such a display, so nothing unstable (a
    # widget's text/plain repr) is compared, and the static record replaces it anyway.
    output.display(
        {WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": root.model_id}}
    )


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    # `layout` and `style` are widgets of their own, each with a comm: close them too.
    for part in ("layout", "style"):
        if isinstance(getattr(widget, part, None), widgets.Widget):
            getattr(widget, part).close()
    widget.close()


class TextView:
    """Terminal IPython: the answer streams to a text stream, then the status line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._parts = {"answer": 0, "thinking": 0}  # parts of each already written
        self._chars = 0  # answer characters already written

    def start(self, model: str) -> None:
        self._write(f"[{model}]\n")

    def update(self, transcript: Transcript) -> None:
        thinking = self._take("thinking", transcript.thinking)
        if thinking:
            self._write(thinking)
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

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class WidgetPullView:
    """`%ollama pull`: a progress bar with bytes, percent and rate, and a Stop button."""

    def __init__(self, output: CellOutput, control: StopControl, stop_hint: str | None) -> None:
        self._out = output
        self._control = control
        self._stop_hint = stop_hint

    def start(self, progress: PullProgress) -> None:
        self._bar = widgets.FloatProgress(value=0.0, min=0.0, max=100.0, description="pull")
        self._label = widgets.Label(value=f"{progress.model}: {progress.line()}")
        self._stop = stop_button(self._stop_hint, "Stop the pull; pulling again resumes it")
        self._stop.on_click(lambda _button: self._control.stop())
        self._root = widgets.HBox([self._bar, self._label, self._stop])
        show_widget(self._out, self._root)

    def update(self, progress: PullProgress) -> None:
        if progress.total:
            self._bar.value = 100 * progress.completed / progress.total
        self._label.value = f"{progress.model}: {progress.line()}"

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
            f" `%ollama pull {progress.model}` resumes it"
        )
    return f"pull of {progress.model} failed at {done}: {progress.outcome}"
