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
    images: tuple[str, ...] = ()  # base64, as sent: later turns replay them without re-encoding

    @property
    def complete(self) -> bool:
        return self.done_reason not in UNFINISHED


def _user(prompt: str, images: tuple[str, ...] | list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": prompt}
    if images:
        message["images"] = list(images)
    return message


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def messages(
        self, prompt: str, system: str | None, images: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The /api/chat messages for a new turn: system, complete turns, the prompt."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for turn in self.turns:
            if turn.complete:
                messages.append(_user(turn.prompt, turn.images))
                messages.append({"role": "assistant", "content": turn.answer})
        messages.append(_user(prompt, images or ()))
        return messages

    def record(self, prompt: str, result: OllamaResult, images: list[str] | None = None) -> None:
        reason = result.done_reason or "error"
        self.turns.append(Turn(prompt, result.text, reason, result.model, tuple(images or ())))

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
            ["#", "model", "prompt", "answer", "replayed"], rows, empty="no conversation yet"
        )
