"""The stand-in server: an asyncio loop in a daemon thread, and the records it keeps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final

from ._forward import Upstream
from ._handlers import Endpoints
from ._http import BadRequest, ClientGone, Connection, HttpRequest, Responder
from ._knobs import Knobs
from ._models import ModelStore
from ._record import RequestRecord
from ._sched import Scheduler

logger = logging.getLogger("ollama_nb.testing")

START_TIMEOUT: Final = 5.0
STOP_TIMEOUT: Final = 5.0


class StandInServer:
    """A protocol-faithful stand-in for an Ollama server, running in a background thread.

    ``StandInServer(**knobs)`` sets the default knobs (see ``ollama_nb.testing``); as a
    context manager it starts on entry and stops on exit. Port 0 picks a free port.
    ``forward_to`` (an OpenAI-compatible base URL, e.g. llama.cpp's ``.../v1``) and
    ``forward_model`` turn on forward mode (``_forward``): plain streamed answers come
    from that engine, with its real token timing.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        forward_to: str | None = None,
        forward_model: str = "",
        **knobs: Any,
    ) -> None:
        self._initial_knobs = Knobs().merged(knobs)  # KnobError (a ValueError) on typos
        self._knobs = self._initial_knobs
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._new_record = threading.Condition(self._lock)
        self._records: list[RequestRecord] = []
        self._claimed: set[int] = set()  # indexes handed out by wait_for_request
        self._store = ModelStore()
        self._scheduler = Scheduler()  # only touched on the event loop
        upstream = Upstream(forward_to.rstrip("/"), forward_model) if forward_to else None
        self._endpoints = Endpoints(self._store, self._scheduler, upstream)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> StandInServer:
        """Start serving; returns once the port is bound (raises if it cannot be)."""
        if self._thread is not None:
            raise RuntimeError("stand-in server already started")
        self._thread = threading.Thread(target=self._run, name="ollama-stand-in", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"stand-in server did not start within {START_TIMEOUT} s")
        if self._start_error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise self._start_error
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close every connection and join the thread (at most `timeout` seconds)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have ended already
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"stand-in server thread did not stop within {timeout} s")
        self._thread = None

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stand-in server is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # -- knobs -------------------------------------------------------------------------

    @property
    def knobs(self) -> dict[str, Any]:
        """The default knobs for the next request (before its own ``standin_`` options)."""
        with self._lock:
            return self._knobs.as_dict()

    def configure(self, **knobs: Any) -> None:
        """Change the default knobs for later requests; raises ValueError on bad knobs."""
        with self._lock:
            self._knobs = self._knobs.merged(knobs)

    def reset(self) -> None:
        """Forget all records; restore the constructor's knobs (concurrency included),
        the built-in models, and "nothing loaded"."""
        with self._lock:
            self._records.clear()
            self._claimed.clear()
            self._knobs = self._initial_knobs
        self._store.reset()
        loop = self._loop
        if loop is not None and loop.is_running() and self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._reset_scheduler(), loop)
            done.result(STOP_TIMEOUT)
        else:
            self._scheduler.reset()

    async def _reset_scheduler(self) -> None:
        self._scheduler.reset()

    # -- records -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests received so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._records)

    @property
    def last(self) -> RequestRecord:
        with self._lock:
            if not self._records:
                raise LookupError("the stand-in server has not received any request yet")
            return self._records[-1]

    def wait_for_request(
        self, path: str | None = "/api/generate", timeout: float = 5.0
    ) -> RequestRecord:
        """The next request to `path` (any path if None) not returned by an earlier call.

        Blocks until one arrives; raises TimeoutError after `timeout` seconds. Records
        appear once the request's head and body have been read.
        """
        deadline = time.monotonic() + timeout
        with self._new_record:
            while True:
                for index, record in enumerate(self._records):
                    if index not in self._claimed and (path is None or record.path == path):
                        self._claimed.add(index)
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [r.path for r in self._records]
                    raise TimeoutError(
                        f"no request to {path or 'any path'} within {timeout} s (seen: {seen})"
                    )
                self._new_record.wait(remaining)

    def _add_record(self, record: RequestRecord) -> None:
        with self._new_record:
            self._records.append(record)
            self._new_record.notify_all()

    # -- the event loop thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); after start-up, logged
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                logger.exception("stand-in server loop failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()
        numbers = itertools.count(1)

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._serve_connection(Connection(reader, writer, next(numbers)))
            except asyncio.CancelledError:
                # Only stop() cancels these tasks. Ending normally matters: asyncio's
                # streams call task.exception() on the finished task, which raises (and
                # logs a traceback) for a cancelled one.
                pass
            finally:
                connections.discard(task)

        server = await asyncio.start_server(on_connection, self._host, self._requested_port)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            await server.wait_closed()
            self._port = None

    async def _serve_connection(self, connection: Connection) -> None:
        """Requests on one connection, one after the other (keep-alive)."""
        try:
            while True:
                try:
                    request = await connection.read_request()
                except BadRequest as exc:
                    body = f"bad request: {exc}".encode()
                    connection.writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    break
                if request is None or not await self._exchange(connection, request):
                    break
        except (ConnectionError, OSError):
            pass  # the client went away between requests
        finally:
            connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.writer.wait_closed(), 1.0)

    async def _exchange(self, connection: Connection, request: HttpRequest) -> bool:
        """Answer one request; True if the connection can serve another one."""
        with self._lock:
            base = self._knobs
        prepared = self._endpoints.prepare(request, base)
        record = RequestRecord(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            body=prepared.body,
            started_at=request.started_at,
            knobs=prepared.knobs.as_dict(),
            connection_id=connection.number,
        )
        self._add_record(record)
        responder = Responder(connection, record, head_only=request.method == "HEAD")
        work = asyncio.ensure_future(self._endpoints.handle(request, prepared, record, responder))
        # Ollama runs each request under the connection's context, so a client that
        # closes the connection cancels generation at once, not only at the next write.
        # The watcher reads the socket to see that EOF, even during delays and stalls.
        watch = asyncio.ensure_future(connection.wait_peer_closed())
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                if record.disconnected_at is None:
                    record.disconnected_at = time.monotonic()
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientGone):
                await work
        except Exception:
            logger.exception("stand-in handler failed for %s %s", request.method, request.path)
            if not responder.headers_sent and not connection.peer_closed:
                with contextlib.suppress(ClientGone):
                    await responder.send(
                        500, b'{"error":"stand-in internal error"}', "application/json"
                    )
            return False
        finally:
            for task in (work, watch):
                task.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)
            record.finished_at = time.monotonic()
            record.closed.set()
        return (
            request.keep_alive
            and record.completed
            and not responder.connection_closed
            and not connection.peer_closed
        )


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> Iterator[str]:
    """Run a :class:`StandInServer` for the ``with`` block; yields its URL."""
    with StandInServer(host, port, **knobs) as server:
        yield server.url
