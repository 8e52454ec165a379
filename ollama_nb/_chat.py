"""The notebook's conversation for `--chat` cells: what is sent, and what is kept.

A turn that did not finish (stopped, interrupted, timed out, failed) stays in the
history, marked, but is not replayed to the model as if it were a complete answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._result import OllamaResult
from ._tables import Table

UNFINISHED = frozenset({"stopped", "interrupted", "timeout", "error"})


@dataclass(frozen=True)
class Turn:
    prompt: str
    answer: str
    done_reason: str
    model: str

    @property
    def complete(self) -> bool:
        return self.done_reason not in UNFINISHED


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def messages(self, prompt: str, system: str | None) -> list[dict[str, Any]]:
        """The /api/chat messages for a new turn: system, complete turns, the prompt."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for turn in self.turns:
            if turn.complete:
                messages.append({"role": "user", "content": turn.prompt})
                messages.append({"role": "assistant", "content": turn.answer})
        messages.append({"role": "user", "content": prompt})
        return messages

    def record(self, prompt: str, result: OllamaResult) -> None:
        self.turns.append(Turn(prompt, result.text, result.done_reason or "error", result.model))

    def reset(self) -> None:
        self.turns.clear()

    def table(self) -> Table:
        rows = [
            [
                str(i),
                t.model,
                t.prompt,
                t.answer,
                "sent" if t.complete else f"{t.done_reason}: not sent",
            ]
            for i, t in enumerate(self.turns, 1)
        ]
        return Table(
            ["#", "model", "prompt", "answer", "replayed"],
            rows,
            empty="no conversation yet",
            right=("#",),
            wrap=("prompt", "answer"),
        )
