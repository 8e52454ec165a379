"""``/api/pull``: progress lines as Ollama streams them, resumable, with its errors.

An invalid or missing name is a 400 ``invalid model name`` before anything streams. A
name the stand-in's registry does not have (see ``_models``) streams ``pulling
manifest`` and then the error line ``pull model manifest: file does not exist`` in the
200 response, as Ollama does when the registry answers 404 (``"stream": false``: a 500).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ._exchange import Exchange
from ._fields import FieldError, check_struct
from ._models import UNKNOWN_PULL_ERROR, Layer, ModelStore, in_registry, layers_for
from ._names import parse_name
from ._stream import NdjsonStream, encode_json


def _line_count(layers: tuple[Layer, ...], done: list[int], step: int) -> int:
    """Progress lines a pull will write: manifest, per layer 1 + steps, then 3."""
    steps = sum(
        1 + max(1, math.ceil((layer.size - got) / step))
        for layer, got in zip(layers, done, strict=True)
    )
    return 1 + steps + 3


class Pull:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    async def handle(self, ex: Exchange) -> None:
        try:
            check_struct(ex.body, "PullRequest")
        except FieldError as exc:
            await ex.error(exc.status, exc.message)
            return
        name = parse_name(str(ex.body.get("model") or ex.body.get("name") or ""))
        if not name.model or not name.valid:
            await ex.error(400, "invalid model name")
            return
        if ex.knobs.status is not None:
            await ex.error(ex.knobs.status, ex.knobs.error)
            return
        streamed = ex.body.get("stream") is not False
        stream = NdjsonStream(ex.responder, ex.knobs)
        layers = layers_for(name.shortest)
        interval = ex.knobs.pull_interval
        if ex.knobs.pull_seconds is not None:
            done = [self.store.downloaded(layer) for layer in layers]
            interval = ex.knobs.pull_seconds / _line_count(layers, done, ex.knobs.pull_step)

        async def emit(line: dict[str, Any], *, first: bool = False) -> None:
            if not first:
                await asyncio.sleep(interval)
            if streamed:
                await stream.send(line)

        await emit({"status": "pulling manifest"}, first=True)
        if not in_registry(name):
            await asyncio.sleep(interval)
            if streamed:
                await ex.responder.write_line(encode_json({"error": UNKNOWN_PULL_ERROR}))
                await stream.finish()
            else:
                await ex.error(500, UNKNOWN_PULL_ERROR)
            return
        for layer in layers:
            status = {
                "status": f"pulling {layer.short}",
                "digest": layer.digest,
                "total": layer.size,
            }
            await emit(status)  # as in Ollama, the first line of a layer has no "completed"
            done_bytes = self.store.downloaded(layer)
            while True:
                # Resumable: start from what an earlier, interrupted pull got, and record
                # progress only once the client was told about it.
                done_bytes = min(layer.size, done_bytes + ex.knobs.pull_step)
                await emit({**status, "completed": done_bytes})
                self.store.set_downloaded(layer, done_bytes)
                if done_bytes >= layer.size:
                    break
        await emit({"status": "verifying sha256 digest"})
        self.store.add(name)
        await emit({"status": "writing manifest"})
        await emit({"status": "success"})
        if streamed:
            await stream.finish()
        else:
            await ex.json(200, {"status": "success"})
