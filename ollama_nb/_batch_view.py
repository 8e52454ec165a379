"""What a batch shows: one live progress view while it runs, one static record after.

The live view is a single HTML widget (bar + one line of figures) and a Stop button,
whatever the batch's size: no per-element widget, no per-element message. It is
refreshed at most `MAX_HZ` times a second, and less often as the batch goes on (every
`elapsed / SLOWDOWN` seconds, at most every `MAX_INTERVAL`), so that IOPub traffic grows
with the logarithm of a batch's length, not with its length.

The record needs no widget state: a summary line (counts by outcome, tokens/s, elapsed)
and the first and last few answers, shortened, as escaped text.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ._render import STATUS_STYLE, format_seconds

if TYPE_CHECKING:
    from ._batch_result import OllamaBatch
    from ._kernel import CellOutput
    from ._stream import StopControl

MAX_HZ = 10
SLOWDOWN = 20  # refresh interval = elapsed / SLOWDOWN, within [1/MAX_HZ, MAX_INTERVAL]
MAX_INTERVAL = 5.0
SHOWN_EACH_END = 3  # answers shown from the head and from the tail of the batch
ANSWER_CHARS = 120  # each shown answer is cut to this many characters
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
FAILED = ("error", "timeout")


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

    def finish(self, batch: OllamaBatch) -> None:
        from ._view import _close_tree

        self._out.clear()
        display_record(self._out, batch)
        with self._out.comms_unrecorded():
            _close_tree(self._root)


def display_record(output: CellOutput, batch: OllamaBatch) -> None:
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

    def finish(self, batch: OllamaBatch) -> None:
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

    def finish(self, batch: OllamaBatch) -> None:
        pass


def live_batch_view(kernel: Any, control: StopControl, stop_hint: str | None) -> Any:
    """The widget view in the calling cell, or nothing without a kernel."""
    if kernel is None:
        return NullBatchView()
    from ._kernel import CellOutput

    return WidgetBatchView(CellOutput(kernel), control, stop_hint)


# -- the record ------------------------------------------------------------------------


# How each outcome reads in the summary ("8 answers: 6 finished, 2 failed").
OUTCOME_WORDS = {
    "stop": "finished",
    "length": "cut at the length limit",
    "error": "failed",
    "timeout": "timed out",
    "stopped": "stopped",
    "interrupted": "interrupted",
    "skipped": "not started",
}


def outcome_phrase(counts: dict[str, int], total: int) -> str:
    """`8 answers, all finished`, `1 answer, failed`, `8 answers: 6 finished, 2 failed`."""
    if not total:
        return "no prompts"
    answers = f"{total} answer{'' if total == 1 else 's'}"
    words = {reason: OUTCOME_WORDS.get(reason, reason) for reason in counts}
    if len(counts) == 1:
        (reason,) = counts
        return f"{answers}, {'' if total == 1 else 'all '}{words[reason]}"
    return f"{answers}: " + ", ".join(f"{n} {words[reason]}" for reason, n in counts.items())


def summary_line(batch: OllamaBatch) -> str:
    parts = [batch.model, outcome_phrase(batch.counts(), len(batch))]
    if batch.replayed:
        parts.append(f"{batch.replayed} replayed (not sent)")
    rate = batch.tokens_per_second
    if rate is not None:
        parts.append(f"{rate:.1f} tokens/s")
    parts.append(format_seconds(batch.elapsed))
    return " · ".join(parts)


def prompts(n: int) -> str:
    return f"{n} prompt{'' if n == 1 else 's'}"


def _halted(batch: OllamaBatch) -> str | None:
    halted = getattr(batch, "halted", None)  # batches pickled before 0.3 lack it
    return " ".join(f"Stopped early: {halted}".split()) if halted else None


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ANSWER_CHARS else flat[: ANSWER_CHARS - 1] + "…"


def shown_positions(n: int) -> list[int | None]:
    """Positions shown in the record; None marks the gap between head and tail."""
    if n <= 2 * SHOWN_EACH_END:
        return list(range(n))
    head = list(range(SHOWN_EACH_END))
    tail = list(range(n - SHOWN_EACH_END, n))
    return [*head, None, *tail]


def _answer(batch: OllamaBatch, position: int) -> tuple[str, str]:
    result = batch[position]
    if result.done_reason in FAILED and result.error is not None:
        return result.done_reason or "error", _shorten(str(result.error))
    return result.done_reason or "", _shorten(result.text)


def record_text(batch: OllamaBatch) -> str:
    lines = [summary_line(batch)]
    if halted := _halted(batch):
        lines.append(halted)
    for position in shown_positions(len(batch)):
        if position is None:
            lines.append(f"  … {len(batch) - 2 * SHOWN_EACH_END} more")
            continue
        reason, text = _answer(batch, position)
        lines.append(f"  [{position}] {reason}: {text}")
    return "\n".join(lines)


# A failed row (error, timeout) stands apart: the background Jupyter gives error output.
FAILED_ROW = "background: var(--jp-rendermime-error-background, #fdd)"
CELL = "padding: 2px 8px; vertical-align: top; line-height: 1.4"


def record_html(batch: OllamaBatch) -> str:
    """The summary line on top, where the live progress row was; then the answers shown."""
    rows = []
    for position in shown_positions(len(batch)):
        if position is None:
            more = len(batch) - 2 * SHOWN_EACH_END
            rows.append(
                f"<tr><td colspan='3' style='text-align: left; {CELL}'>… {more} more</td></tr>"
            )
            continue
        reason, text = _answer(batch, position)
        row = f" style='{FAILED_ROW}'" if reason in FAILED else ""
        rows.append(
            f"<tr class='ollama-nb-{html.escape(reason)}'{row}>"
            f"<td style='text-align: right; {CELL}'>{position}</td>"
            f"<td style='text-align: left; {CELL}'>{html.escape(reason)}</td>"
            f"<td style='text-align: left; {CELL}'>{html.escape(text)}</td></tr>"
        )
    table = (
        f"<table class='ollama-nb-batch-answers' style='margin: 0'>{''.join(rows)}</table>"
        if rows
        else ""
    )
    status = html.escape(summary_line(batch))
    style = "color: var(--jp-ui-font-color2, #666); font-size: 0.85em; margin-top: 0.4em"
    halted = _halted(batch)
    note = (
        f"<div class='ollama-nb-halted' style='{style}'>{html.escape(halted)}</div>"
        if halted
        else ""
    )
    return (
        f"<div class='ollama-nb-batch'>"
        f"<div class='ollama-nb-status' style='{STATUS_STYLE}'>{status}</div>{note}{table}"
        "</div>"
    )
