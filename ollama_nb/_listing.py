"""`%ollama models` and `%ollama ps`: the server's listings as tables. Pure."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from ._tables import Table, human_bytes, human_duration

# Ollama keeps a model loaded "forever" (keep_alive < 0) by setting its expiry centuries ahead.
_FOREVER_SECONDS = 365 * 86400
# Go writes RFC 3339 with 0-9 fraction digits and "Z"; Python 3.10's fromisoformat takes 3 or 6.
_FRACTION = re.compile(r"\.(\d+)")


def models_table(tags: dict[str, Any]) -> Table:
    models = tags.get("models", [])
    details = [m.get("details") or {} for m in models]
    columns: list[tuple[str, list[Any]]] = [
        ("name", [m.get("name", "?") for m in models]),
        ("size", [m.get("size") for m in models]),
        ("parameters", [d.get("parameter_size") for d in details]),
        ("quantization", [d.get("quantization_level") for d in details]),
    ]
    # An OpenAI-compatible server's /v1/models says names only: no column of blanks.
    shown = [(name, values) for name, values in columns
             if name == "name" or not models or any(v is not None for v in values)]  # fmt: skip
    rows = [[_cell(name, values[i]) for name, values in shown] for i in range(len(models))]
    return Table([name for name, _ in shown], rows,
                 empty="no models: pull one with %ollama pull NAME",
                 right=("size", "parameters"))  # fmt: skip


def _cell(column: str, value: Any) -> str:
    if column == "size":
        return human_bytes(value)
    return "" if value is None else str(value)


def loaded_table(ps: dict[str, Any], now: datetime | None = None) -> Table:
    now = now or datetime.now(timezone.utc)
    rows = [
        [
            str(m.get("name", "?")),
            human_bytes(m.get("size")),
            human_bytes(m.get("size_vram")),
            str(m.get("context_length", "")),
            unloads(m.get("expires_at"), now),
        ]
        for m in ps.get("models", [])
    ]
    return Table(["name", "size", "in VRAM", "context", "unloads"], rows,
                 empty="no model is loaded now",
                 right=("size", "in VRAM", "context"))  # fmt: skip


def unloads(expires_at: object, now: datetime) -> str:
    """When a loaded model unloads, relative to ``now``: ``in 4 min``; the server's text
    as given when it is not a time this can read."""
    when = parse_time(expires_at)
    if when is None:
        return "" if expires_at is None else str(expires_at)
    seconds = (when - now).total_seconds()
    if seconds > _FOREVER_SECONDS:
        return "never (kept loaded)"
    if seconds < 0.5:
        return "now"
    return "in " + human_duration(seconds)


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text.strip(), count=1)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
