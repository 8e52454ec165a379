"""Replay server: ``python bench/_replay.py RECORDING``.

Answers every HTTP request with the recorded bytes (a complete stand-in response),
written at once, then closes the connection. Prints its URL on the first line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _handler(blob: bytes) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(blob)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return answer


async def _serve(blob: bytes) -> None:
    server = await asyncio.start_server(_handler(blob), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"replay listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    asyncio.run(_serve(Path(sys.argv[1]).read_bytes()))


if __name__ == "__main__":
    main()
