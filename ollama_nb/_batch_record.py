"""A finished batch's static record: a summary line, then the first and last few answers,
shortened, as escaped text. Pure functions of the batch; no widget state.

Shared by the batch itself (`OllamaBatch._repr_mimebundle_`, `__repr__`) and by the views
that end with it (`_batch_view`): neither imports the other.
"""

from __future__ import annotations

import html
from typing import Any, Protocol

from ._render import STATUS_STYLE, format_seconds

SHOWN_EACH_END = 3  # answers shown from the head and from the tail of the batch
ANSWER_CHARS = 120  # each shown answer is cut to this many characters
FAILED = ("error", "timeout")  # the outcomes counted as failures


class Batch(Protocol):
    """What a record shows: any object with these (an `OllamaBatch`)."""

    model: str

    @property
    def replayed(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, position: int) -> Any: ...

    def counts(self) -> dict[str, int]: ...

    @property
    def tokens_per_second(self) -> float | None: ...

    @property
    def elapsed(self) -> float: ...


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


def summary_line(batch: Batch) -> str:
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


def _halted(batch: Batch) -> str | None:
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


def _answer(batch: Batch, position: int) -> tuple[str, str]:
    result = batch[position]
    if result.done_reason in FAILED and result.error is not None:
        return result.done_reason or "error", _shorten(str(result.error))
    return result.done_reason or "", _shorten(result.text)


def record_text(batch: Batch) -> str:
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


def record_html(batch: Batch) -> str:
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
