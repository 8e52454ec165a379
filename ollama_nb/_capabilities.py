"""Refuse before sending when /api/show says the model lacks a capability (vision for
images, tools for --tools), naming the local models that have it. Where /api/show fails
or lists no capabilities (older servers), nothing is refused: the request itself tells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import OllamaError, OllamaResponseError

if TYPE_CHECKING:
    from ._client import OllamaClient


async def refuse_incapable(
    client: OllamaClient, model: str, capability: str, cannot: str, example: str
) -> None:
    """OllamaResponseError (400) `model 'M' cannot <cannot> (its capabilities: …); …`."""
    try:
        show = await client.call("POST", "/api/show", {"model": model})
    except OllamaError:
        return
    capabilities = show.get("capabilities") if isinstance(show, dict) else None
    if not isinstance(capabilities, list) or capability in capabilities:
        return
    can = await models_with(client, capability)
    others = (
        f"models on {client.host} that can: {', '.join(can)}"
        if can
        else f"no model on {client.host} lists {capability} (pull one, e.g. {example})"
    )
    raise OllamaResponseError(
        f"model {model!r} cannot {cannot} (its capabilities: {', '.join(map(str, capabilities))});"
        f" {others}",
        400,
    )


async def models_with(client: OllamaClient, capability: str) -> list[str]:
    """The server's models whose /api/tags entry lists `capability`."""
    try:
        tags = await client.call("GET", "/api/tags")
    except OllamaError:
        return []
    names = []
    for entry in tags.get("models", []) if isinstance(tags, dict) else []:
        if capability in (entry.get("capabilities") or []):
            names.append(str(entry.get("name") or entry.get("model") or "?"))
    return names
