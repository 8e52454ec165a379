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

OpenAI's API too, as Ollama serves it (``_openai``): ``/v1/chat/completions`` (Server-Sent
Events, the usage in a last chunk with ``stream_options.include_usage``, ``reasoning``
deltas for thinking), ``/v1/models`` and ``/v1/embeddings``, with OpenAI-shaped errors
(an unknown model: 404, ``code: "model_not_found"``). Every knob applies there too, given
as top-level ``standin_*`` fields of the body; so ``--host http://127.0.0.1:PORT/v1``
works against it.

Forward mode, for a test suite's one run against real token timing:
``StandInServer(forward_to="http://127.0.0.1:8080/v1", forward_model="NAME")`` answers a
plain streamed generate or chat (no knob set; no thinking, tools, images, format or code
asked for) with the tokens that OpenAI-compatible engine streams (``_forward``); the
record's ``forwarded`` says so. Everything else stays as described here.

Models (``/api/tags`` lists them newest first, with ``capabilities``):

- ``stand-in``: completion
- ``stand-in-think``: completion, thinking; it thinks unless the request says
  ``"think": false`` (as Ollama's thinking models do)
- ``stand-in-vision``: completion, vision; its answer says what it was shown:
  ``[stand-in] saw 1 image: 640x480 PNG. ...``
- ``stand-in-embed``: embedding (``/api/embed``: 16-dimensional unit vectors computed
  from the words of the text)

``/api/pull`` adds any valid name (capabilities from the name: ``think``, ``vision``,
``embed``), except names starting with ``no-such``, which fail as an unknown model does.

What it checks and answers like Ollama's server (``server/routes.go``): field types,
``think`` (a bool or ``low|medium|high|max``), ``keep_alive`` (Go durations, seconds,
``0``, ``-1``), option types (a 500), model names (404 ``model 'x' not found``), wrong
paths (plain-text ``404 page not found``) and methods (405), capabilities (thinking,
vision, embedding). An empty prompt loads the model (``done_reason: "load"``), with
``keep_alive: 0`` unloads it (``"unload"``); ``/api/ps`` lists what is loaded until its
keep-alive runs out. Each model serves ``num_parallel`` requests at once; the others wait
in a queue, receiving nothing, and past ``max_queue`` get a 503 ``server busy``. Each
:class:`RequestRecord` tells when the request was queued and scheduled, and the images it
carried (decoded: bytes, format, pixel size).

Knobs (constructor, ``configure()``, or per request as ``options`` keys prefixed
``standin_``; unknown knobs are an error; ``reset()`` restores the constructor's):
``token_interval`` (0.005 s), ``first_chunk_delay`` (0), ``tokens`` (24), ``reply``,
``thinking``, ``stall_after``, ``stall_for``, ``drop_after``, ``error_after``, ``error``
("stand-in error"), ``malformed_after``, ``status``, ``split_utf8``,
``close_before_headers``, ``pull_interval`` (0.02 s), ``pull_step`` (262144 bytes),
``pull_seconds``, ``num_parallel`` (1), ``max_queue`` (512), ``api_key``. Run
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
