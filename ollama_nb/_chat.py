"""The notebook's conversation for `--chat` cells: what is sent, and what is kept.

A turn that did not finish (stopped, interrupted, timed out, failed) stays in the
history, marked, but is not replayed to the model as if it were a complete answer.

A turn takes its place when it is asked (`ask`), not when it finishes, so `--background`
turns keep the order in which they were asked; `reset` drops turns still in flight, so
an answer that finishes after it never lands in the new conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._result import OllamaResult
from ._tables import Table

UNFINISHED = frozenset({"stopped", "interrupted", "timeout", "error"})
IN_FLIGHT = "in flight"


@dataclass
class Turn:
    prompt: str
    answer: str
    done_reason: str
    model: str
    images: tuple[str, ...] = ()  # base64, as sent: later turns replay them without re-encoding
    # --tools: the assistant turns that called tools and the tool messages that answered,
    # replayed between the prompt and the answer; `calls` as the history shows them.
    steps: tuple[dict[str, Any], ...] = ()
    calls: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.done_reason not in UNFINISHED and self.done_reason != IN_FLIGHT


def _user(prompt: str, images: tuple[str, ...] | list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": prompt}
    if images:
        message["images"] = list(images)
    return message


def _final_answer(result: OllamaResult) -> str:
    """The answer without the text of rounds that called tools (`_tool_loop` joins each
    round's text with a blank line): those rounds are replayed as they were sent."""
    earlier = "".join(
        m["content"] + "\n\n"
        for m in result.tool_messages
        if m.get("role") == "assistant" and m.get("content")
    )
    return result.text[len(earlier) :] if result.text.startswith(earlier) else result.text


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
                messages.extend(turn.steps)
                messages.append({"role": "assistant", "content": turn.answer})
        messages.append(_user(prompt, images or ()))
        return messages

    def ask(
        self, prompt: str, system: str | None, model: str = "", images: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The messages for a new turn (as `messages`), whose place is kept from now on."""
        messages = self.messages(prompt, system, images)
        self.turns.append(Turn(prompt, "", IN_FLIGHT, model, tuple(images or ())))
        return messages

    def record(self, prompt: str, result: OllamaResult) -> None:
        """Fill the oldest turn in flight with this prompt; none (a reset since): drop it."""
        for turn in self.turns:
            if turn.done_reason == IN_FLIGHT and turn.prompt == prompt:
                turn.answer = _final_answer(result)
                turn.done_reason = result.done_reason or ("error" if result.error else "done")
                turn.model = result.model or turn.model
                turn.steps = tuple(result.tool_messages)
                turn.calls = tuple(f"{c.shown()} {c.outcome()}" for c in result.tool_calls)
                return

    def reset(self) -> None:
        self.turns.clear()

    def table(self) -> Table:
        rows = [
            [
                str(i),
                t.model,
                t.prompt,
                "\n".join([*(f"[tool] {c}" for c in t.calls), t.answer]),
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
