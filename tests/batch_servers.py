"""A scripted Ollama-like server for batch tests: what it does depends on the prompt.

It speaks just enough HTTP/1.1 (keep-alive, chunked NDJSON) and runs like Ollama's
scheduler: `num_parallel` requests at once, the others wait in a FIFO queue and are sent
nothing at all until they are scheduled. Prompts steer single requests:

- contains "fail": HTTP 500 with an error body;
- contains "busy": 503 "server busy" the first `busy_times` times it is asked;
- contains "drop": the connection is closed before any response, the first `drop_times`
  times (always, with drop_times=None);
- contains "stall": scheduled, then sends nothing, ever;
- otherwise: `chunks` chunks `interval` seconds apart, then the final chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Seen:
    prompt: str
    arrived: float
    scheduled: float | None = None
    outcome: str = ""  # "answered", "fail", "busy", "drop", "stall", "gone"


@dataclass
class ScriptedServer:
    num_parallel: int = 1
    chunks: int = 5
    interval: float = 0.05
    busy_times: int = 1
    drop_times: int | None = 1
    seen: list[Seen] = field(default_factory=list)
    asked: Counter[str] = field(default_factory=Counter)
    url: str = ""
    max_running: int = 0

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running = 0

    # -- lifecycle ---------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[ScriptedServer]:
        thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        thread.start()
        assert self._ready.wait(5), "scripted server did not start"
        try:
            yield self
        finally:
            assert self._loop is not None and self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(5)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(self.num_parallel)  # FIFO for waiters
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stop.wait()

    # -- HTTP --------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = json.loads(await reader.readexactly(length)) if length else {}
        prompt = str(body.get("prompt", ""))
        self.asked[prompt] += 1
        seen = Seen(prompt, time.monotonic())
        self.seen.append(seen)
        if "drop" in prompt and (self.drop_times is None or self.asked[prompt] <= self.drop_times):
            seen.outcome = "drop"
            return False
        if "busy" in prompt and self.asked[prompt] <= self.busy_times:
            seen.outcome = "busy"
            await self._error(writer, 503, "server busy, please try again.")
            return True
        if "fail" in prompt:
            seen.outcome = "fail"
            await self._error(writer, 500, "scripted failure")
            return True
        gone = asyncio.ensure_future(reader.read(1))  # EOF: the client closed
        async with self._slots:
            seen.scheduled = time.monotonic()
            self._running += 1
            self.max_running = max(self.max_running, self._running)
            try:
                if gone.done():
                    seen.outcome = "gone"
                    return False
                answer = asyncio.ensure_future(self._answer(writer, prompt, seen))
                await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():
                    answer.cancel()
                    seen.outcome = "gone"
                    return False
                return True
            finally:
                self._running -= 1
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone

    async def _error(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _answer(self, writer: asyncio.StreamWriter, prompt: str, seen: Seen) -> None:
        if "stall" in prompt:
            seen.outcome = "stall"
            await asyncio.Event().wait()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(self.chunks):
            if i:
                await asyncio.sleep(self.interval)
            self._chunk(writer, {"model": "m", "response": f"{prompt}#{i} ", "done": False})
            await writer.drain()
        final = {"model": "m", "response": "", "done": True, "done_reason": "stop",
                 "eval_count": self.chunks, "eval_duration": 1_000_000}  # fmt: skip
        self._chunk(writer, final)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        seen.outcome = "answered"

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, value: dict[str, object]) -> None:
        data = json.dumps(value).encode() + b"\n"
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
