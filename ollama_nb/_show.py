"""`%ollama show NAME` and `%ollama unload NAME`: one model's details, and unloading it."""

from __future__ import annotations

from typing import Any

from ._client import OllamaClient
from ._tables import Table


async def show_model(client: OllamaClient, name: str) -> Table:
    """Family, parameter size, quantization, context length, capabilities, license."""
    return details_table(await client.call("POST", "/api/show", {"model": name}), name)


def details_table(show: dict[str, Any], name: str) -> Table:
    details = show.get("details") or {}
    license_text = str(show.get("license") or "").strip()
    rows = [
        ["family", str(details.get("family") or "?")],
        ["parameters", str(details.get("parameter_size") or "?")],
        ["quantization", str(details.get("quantization_level") or "?")],
        ["context length", str(context_length(show) or "?")],
        ["capabilities", ", ".join(map(str, show.get("capabilities") or [])) or "?"],
        ["license", license_text.splitlines()[0] if license_text else "none given"],
    ]
    return Table(["model", name], rows, empty="")


def context_length(show: dict[str, Any]) -> int | None:
    """`model_info` names it `<architecture>.context_length`."""
    info = show.get("model_info") or {}
    for key, value in info.items():
        if str(key).endswith(".context_length") and isinstance(value, int):
            return value
    value = (show.get("details") or {}).get("context_length")
    return value if isinstance(value, int) else None


async def unload_model(client: OllamaClient, name: str) -> str:
    """An empty prompt with keep_alive 0: the server unloads the model, generates nothing."""
    payload = {"model": name, "prompt": "", "keep_alive": 0, "stream": False}
    answer = await client.call("POST", "/api/generate", payload)
    reason = answer.get("done_reason") if isinstance(answer, dict) else None
    if reason in (None, "unload"):
        return f"unloaded {name} (it is no longer in memory)"
    return f"asked {client.host} to unload {name}; it answered done_reason={reason!r}"
