"""What a batch shows: one live progress view while it runs, one static record after.

The live view is a single HTML widget (bar + one line of figures) and a Stop button,
whatever the batch's size: no per-element widget, no per-element message. It is
refreshed at most `MAX_HZ` times a second, and less often as the batch goes on (every
`elapsed / SLOWDOWN` seconds, at most every `MAX_INTERVAL`), so that IOPub traffic grows
with the logarithm of a batch's length, not with its length.

The record that replaces it is the batch's own (`_batch_record`).
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._batch_record import Batch, prompts, record_text
from ._render import format_seconds

if TYPE_CHECKING:
    from ._kernel import CellOutput
    from ._stream import StopControl

MAX_HZ = 10
SLOWDOWN = 20  # refresh interval = elapsed / SLOWDOWN, within [1/MAX_HZ, MAX_INTERVAL]
MAX_INTERVAL = 5.0
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Finished(Batch, Protocol):
    """What a view ends with: a batch that has its record (an `OllamaBatch`)."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]: ...

    def metadata(self) -> dict[str, Any]: ...


def refresh_interval(elapsed: float) -> float:
    return min(MAX_INTERVAL, max(1 / MAX_HZ, elapsed / SLOWDOWN))


@dataclass
class BatchStats:
    """A snapshot of a running batch."""

    model: str
    total: int
    done: int = 0  # ended, whatever the outcome
    failed: int = 0  # ended with error or timeout
    in_flight: int = 0
    tokens: int = 0  # chunks received so far, over all requests
    elapsed: float = 0.0
    replayed: int = 0  # answered from the cache file: no request (counted in `done` too)

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.elapsed if self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far, or None before the first element ended."""
        if not self.done or self.done >= self.total:
            return None
        return (self.total - self.done) * self.elapsed / self.done

    def line(self) -> str:
        parts = [f"{self.done} / {self.total}"]
        if self.replayed:
            parts.append(f"{self.replayed} replayed")
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{self.in_flight} in flight")
        rate = self.tokens_per_second
        if rate is not None:
            parts.append(f"{rate:.0f} tokens/s")
        parts.append(_seconds(self.elapsed))
        if self.eta is not None:
            parts.append(f"~{_seconds(self.eta)} left")
        return " · ".join(parts)


def _seconds(seconds: float) -> str:
    # Whole seconds past 10 s: the text then changes at most once a second.
    return format_seconds(seconds) if seconds < 10 else f"{seconds:.0f} s"


class WidgetBatchView:
    """Progress bar with figures, and a Stop button that stops the whole batch."""

    def __init__(self, output: CellOutput, control: StopControl, stop_hint: str | None) -> None:
        self._out = output
        self._control = control
        self._stop_hint = stop_hint
        self._last = ""

    def start(self, stats: BatchStats) -> None:
        # Every widget message of the view is unrecorded: a headless run saves no state.
        with self._out.comms_unrecorded():
            self._start(stats)

    def _start(self, stats: BatchStats) -> None:
        import ipywidgets as widgets

        from ._view import header_row, shared, show_widget, stop_button

        self._progress = widgets.HTML(
            value=self._html(stats),
            layout=shared("layout"),
            style=shared("html-style"),
            _dom_classes=("ollama-nb-progress",),  # a fixed width: Stop keeps its place
        )
        self._stop = stop_button(
            self._stop_hint, "Stop the batch: answers so far are kept, no more start"
        )
        self._stop.on_click(self._on_stop)
        parts: list[Any] = [self._progress, self._stop]
        if self._stop_hint:
            parts.append(
                widgets.Label(
                    value=self._stop_hint, layout=shared("layout"), style=shared("label-style")
                )
            )
        self._root = header_row([*parts, shared("css")])
        show_widget(self._out, self._root)

    def _on_stop(self, _button: Any) -> None:
        self._stop.disabled = True
        self._control.stop()

    def _html(self, stats: BatchStats) -> str:
        model = html.escape(stats.model)
        return (
            f"{model} · <progress max='{stats.total}' value='{stats.done}'"
            f" style='width: 12em; height: 0.8em; vertical-align: middle'></progress>"
            f" {html.escape(stats.line())}"
        )

    def update(self, stats: BatchStats) -> None:
        value = self._html(stats)
        if value != self._last:  # nothing visible changed: send nothing
            with self._out.comms_unrecorded():
                self._progress.value = self._last = value

    def finish(self, batch: Finished) -> None:
        from ._view import _close_tree

        self._out.clear()
        display_record(self._out, batch)
        with self._out.comms_unrecorded():
            _close_tree(self._root)


def display_record(output: CellOutput, batch: Finished) -> None:
    """The static record, with the `ollama_nb` metadata a saved notebook keeps (captured,
    like a single request's, under `%%capture`)."""
    output.display(batch._repr_mimebundle_(), {"ollama_nb": batch.metadata()})


class TextBatchView:
    """Terminal IPython: a progress line now and then, then the summary."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._last_done = -1
        self._next_at = 0.0

    def start(self, stats: BatchStats) -> None:
        self._write(f"[{stats.model}] {prompts(stats.total)}\n")

    def update(self, stats: BatchStats) -> None:
        if stats.done != self._last_done and stats.elapsed >= self._next_at:
            self._last_done = stats.done
            self._next_at = stats.elapsed + 2.0  # a line every 2 s at most
            self._write(stats.line() + "\n")

    def finish(self, batch: Finished) -> None:
        self._write(record_text(batch) + "\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class NullBatchView:
    """`display=False`, or no kernel: shows nothing."""

    def start(self, stats: BatchStats) -> None:
        pass

    def update(self, stats: BatchStats) -> None:
        pass

    def finish(self, batch: Finished) -> None:
        pass


def live_batch_view(kernel: Any, control: StopControl, stop_hint: str | None) -> Any:
    """The widget view in the calling cell, or nothing without a kernel."""
    if kernel is None:
        return NullBatchView()
    from ._kernel import CellOutput

    return WidgetBatchView(CellOutput(kernel), control, stop_hint)
