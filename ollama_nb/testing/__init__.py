"""A protocol-faithful stand-in for an Ollama server, for tests, tutorials and CI.

No model runs: answers are deterministic filler that starts with ``[stand-in] ``, so
nothing it serves can pass for a model's answer. It speaks HTTP/1.1 itself over asyncio
streams (standard library only) to control exactly when bytes go out, like Ollama:
NDJSON in chunked encoding, headers only together with the first chunk, generation
cancelled as soon as the client closes the connection.

In-process::

    from ollama_nb.testing import StandInServer, serve

    with StandInServer(token_interval=0.01) as server:
        ...  # point a client at server.url
        record = server.wait_for_request("/api/generate")
        record.wait_closed(2.0)
        assert record.chunks_after_disconnect == 0

    with serve() as url:
        ...

From a shell: ``python -m ollama_nb.testing --port 11434``.

Models: ``stand-in`` and ``stand-in-think`` (can think); ``/api/pull`` adds any name.

Knobs (constructor, ``configure()``, or per request as ``options`` keys prefixed
``standin_``; unknown knobs are an error): ``token_interval`` (0.005 s),
``first_chunk_delay`` (0), ``tokens`` (24), ``reply``, ``thinking``, ``stall_after``,
``stall_for``, ``drop_after``, ``error_after``, ``error`` ("stand-in error"),
``malformed_after``, ``status``, ``split_utf8``, ``close_before_headers``,
``pull_interval`` (0.02 s), ``pull_step`` (262144 bytes), ``api_key``. Run
``python -m ollama_nb.testing --help`` for what each does.
"""

from ._images import ReceivedImage, make_png
from ._knobs import KnobError, Knobs
from ._listener import unresponsive_listener
from ._record import RequestRecord
from ._server import StandInServer, serve

__all__ = [
    "KnobError",
    "Knobs",
    "ReceivedImage",
    "RequestRecord",
    "StandInServer",
    "make_png",
    "serve",
    "unresponsive_listener",
]
