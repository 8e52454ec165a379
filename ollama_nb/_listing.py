"""`%ollama models` and `%ollama ps`: the server's listings as tables. Pure."""

from __future__ import annotations

from typing import Any

from ._tables import Table, human_bytes


def models_table(tags: dict[str, Any]) -> Table:
    rows = [
        [
            str(m.get("name", "?")),
            human_bytes(m.get("size")),
            str((m.get("details") or {}).get("parameter_size", "")),
            str((m.get("details") or {}).get("quantization_level", "")),
        ]
        for m in tags.get("models", [])
    ]
    return Table(["name", "size", "parameters", "quantization"], rows,
                 empty="no models: pull one with %ollama pull NAME")  # fmt: skip


def loaded_table(ps: dict[str, Any]) -> Table:
    rows = [
        [
            str(m.get("name", "?")),
            human_bytes(m.get("size")),
            human_bytes(m.get("size_vram")),
            str(m.get("context_length", "")),
            str(m.get("expires_at", "")),
        ]
        for m in ps.get("models", [])
    ]
    return Table(["name", "size", "in VRAM", "context", "unloads at"], rows,
                 empty="no model is loaded now")  # fmt: skip
