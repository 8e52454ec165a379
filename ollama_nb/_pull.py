"""`%ollama pull NAME`: progress as it downloads, and a Stop that closes the stream.

Ollama resumes an interrupted pull from the bytes it already has, so stopping loses
nothing: the same command later carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol

from ._client import OllamaClient
from ._exceptions import OllamaError
from ._stream import StopControl, race
from ._tables import human_bytes

PULL_HZ = 4  # progress refreshes a second


@dataclass
class PullProgress:
    model: str
    status: str = "starting"
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # digest: (done, total)
    started: float = field(default_factory=time.monotonic)
    outcome: str = ""  # "success", "stopped", "interrupted" or an error message

    @property
    def completed(self) -> int:
        return sum(done for done, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(total for _, total in self.layers.values())

    def line(self) -> str:
        """`pulling · 120.0 MB / 2.1 GB · 5% · 10.2 MB/s`"""
        parts = [self.status]
        if self.total:
            rate = self.completed / max(time.monotonic() - self.started, 1e-6)
            parts += [
                f"{human_bytes(self.completed)} / {human_bytes(self.total)}",
                f"{100 * self.completed / self.total:.0f}%",
                f"{human_bytes(rate)}/s",
            ]
        return " · ".join(parts)

    def apply(self, chunk: dict[str, object]) -> None:
        self.status = str(chunk.get("status") or self.status)
        digest, total = chunk.get("digest"), chunk.get("total")
        if isinstance(digest, str) and isinstance(total, int):
            done = chunk.get("completed")
            self.layers[digest] = (done if isinstance(done, int) else 0, total)


class PullView(Protocol):
    def start(self, progress: PullProgress) -> None: ...
    def update(self, progress: PullProgress) -> None: ...
    def finish(self, progress: PullProgress) -> None: ...


async def pull(
    client: OllamaClient, model: str, view: PullView, control: StopControl
) -> PullProgress:
    progress = PullProgress(model)
    view.start(progress)

    async def consume() -> None:
        stream = client.stream("/api/pull", {"model": model, "stream": True})
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                progress.apply(chunk)

    try:
        outcome = await race(consume(), lambda: view.update(progress), control, hz=PULL_HZ)
        if outcome == "stopped":
            progress.outcome = "stopped"
        else:
            progress.outcome = "success" if progress.status == "success" else progress.status
    except OllamaError as exc:
        progress.outcome = str(exc)
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress.outcome = "interrupted"
        raise
    finally:
        view.finish(progress)
    return progress
