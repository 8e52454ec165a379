"""NDJSON streams as Ollama writes them, with the fault-injection knobs applied.

Every streamed endpoint (generate, chat, pull) sends its lines through
:class:`NdjsonStream`, so stalls, dropped connections, error lines, malformed lines and
split UTF-8 behave the same everywhere. The knobs count *data* lines: the lines the
endpoint itself produces (the malformed line is extra and not counted). An error before
the first line is an HTTP 500 with a JSON body, as in Ollama, never a 200 and an error
line.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from ._http import Responder, ResponseEnded
from ._knobs import Knobs

MALFORMED_LINE: Final = b'{"stand-in": "this line is deliberately not JSON'
JSON_TYPE: Final = "application/json; charset=utf-8"
# Ollama's streamResponse sets this bare type before it writes an error that came before
# any output as the whole response.
EARLY_ERROR_TYPE: Final = "application/json"

# Go's encoding/json (what Ollama uses) escapes these even inside strings; clients must
# decode JSON rather than search the raw line, so the stand-in does the same.
_GO_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def encode_json(value: Any) -> bytes:
    """Compact JSON, raw UTF-8 and HTML-escaped like Go's ``json.Marshal``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # Safe as plain replacements: these characters can only occur inside JSON strings.
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode("utf-8")


async def wait_forever() -> None:
    """Block until cancelled: the client leaves, or the server stops."""
    await asyncio.Event().wait()


class NdjsonStream:
    """Writes the lines of one NDJSON response, applying the stream knobs."""

    def __init__(self, responder: Responder, knobs: Knobs) -> None:
        self._responder = responder
        self._knobs = knobs
        self.lines = 0  # data lines written
        self._stalled = False
        self._malformed = False

    async def send(self, value: dict[str, Any]) -> None:
        """Write one data line, or end the response here if a knob says so.

        Raises :class:`ResponseEnded` when an error line or a dropped connection ended
        the response; the caller must then stop producing lines.
        """
        knobs = self._knobs
        if knobs.stall_after == self.lines and not self._stalled:
            self._stalled = True
            if knobs.stall_for is None:
                await wait_forever()
            else:
                await asyncio.sleep(knobs.stall_for)
        if knobs.malformed_after == self.lines and not self._malformed:
            self._malformed = True
            await self._responder.write_line(MALFORMED_LINE, split=knobs.split_utf8)
        if knobs.error_after == self.lines:
            if not self._responder.headers_sent:
                # Nothing sent yet: Ollama answers an early error with a real status.
                body = encode_json({"error": knobs.error})
                await self._responder.send(500, body, EARLY_ERROR_TYPE)
                raise ResponseEnded("error status")
            await self._responder.write_line(
                encode_json({"error": knobs.error}), split=knobs.split_utf8
            )
            await self._responder.end_chunked()
            raise ResponseEnded("error line")
        if knobs.drop_after == self.lines:
            # The body has begun (headers at least), then the connection goes away
            # without the terminating chunk: the client sees an incomplete body.
            await self._responder.start_chunked()
            self._responder.drop()
            raise ResponseEnded("dropped")
        await self._responder.write_line(encode_json(value), split=knobs.split_utf8)
        self.lines += 1

    async def finish(self) -> None:
        """The terminating chunk (the final ``done`` line must already be sent)."""
        await self._responder.end_chunked()
