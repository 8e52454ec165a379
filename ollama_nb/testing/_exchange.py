"""One request being answered: what every endpoint handler gets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from ._http import HttpRequest, Responder
from ._knobs import Knobs
from ._record import RequestRecord
from ._stream import JSON_TYPE, encode_json

__all__ = ["JSON_TYPE", "TEXT_TYPE", "Exchange", "now_iso", "ns"]

TEXT_TYPE: Final = "text/plain; charset=utf-8"


def now_iso() -> str:
    """``created_at`` as Go writes ``time.Now().UTC()`` (to the microsecond here)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns(seconds: float) -> int:
    """A duration in nanoseconds, never 0 (clients divide by them)."""
    return max(1, round(seconds * 1e9))


@dataclass
class Exchange:
    """One request being answered."""

    request: HttpRequest
    record: RequestRecord
    responder: Responder
    knobs: Knobs
    body: dict[str, Any]  # {} when the request had no JSON object body

    async def json(self, status: int, value: object) -> None:
        await self.responder.send(status, encode_json(value), JSON_TYPE)

    async def error(self, status: int, message: str) -> None:
        await self.json(status, {"error": message})

    async def text(self, status: int, text: str) -> None:
        await self.responder.send(status, text.encode(), TEXT_TYPE)
