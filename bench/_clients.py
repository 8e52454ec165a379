"""The two reference clients, each streaming one /api/generate answer.

Both create their client before the clock starts (their best case); the `%%ollama`
cell is timed as a user waits for it, client creation included.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import ollama

MODEL = "stand-in"
PROMPT = "Go."
PAYLOAD = {"model": MODEL, "prompt": PROMPT, "stream": True}
TIMEOUT = 60.0


@dataclass(frozen=True)
class ClientRun:
    seconds: float  # wall time of the request, first byte sent to last chunk parsed
    cpu_seconds: float  # CPU time of this process meanwhile
    chars: int  # answer characters received


async def _httpx_loop(url: str) -> ClientRun:
    """The plain loop anyone would write: aiter_lines + json.loads per NDJSON line."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        started, cpu = time.perf_counter(), time.process_time()
        parts: list[str] = []
        async with client.stream("POST", "/api/generate", json=PAYLOAD) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                chunk = json.loads(line)
                parts.append(chunk.get("response", ""))
                if chunk.get("done"):
                    break
        return _finish(started, cpu, parts)


async def _ollama_loop(url: str) -> ClientRun:
    """The official client, `ollama.AsyncClient.generate(stream=True)`."""
    client = ollama.AsyncClient(host=url, timeout=TIMEOUT)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        parts: list[str] = []
        async for part in await client.generate(model=MODEL, prompt=PROMPT, stream=True):
            parts.append(part.response or "")
        return _finish(started, cpu, parts)
    finally:
        await client.close()


def _finish(started: float, cpu: float, parts: list[str]) -> ClientRun:
    text = "".join(parts)
    return ClientRun(time.perf_counter() - started, time.process_time() - cpu, len(text))


CLIENTS: dict[str, Callable[[str], Awaitable[ClientRun]]] = {
    "httpx": _httpx_loop,
    "ollama": _ollama_loop,
}


def run_client(name: str, url: str) -> ClientRun:
    """One answer from `url` with the reference client `name` ("httpx" or "ollama")."""
    return asyncio.run(asyncio.wait_for(CLIENTS[name](url), TIMEOUT))
