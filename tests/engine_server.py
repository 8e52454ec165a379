"""A real inference engine for tests: llama-cpp-python's server on loopback, serving the
tiny random model that tests/engine/make_model.py writes, and a proxy that stalls.

tests/run makes the engine's venv and names its python in $OLLAMA_NB_ENGINE_PYTHON (or
says why not in $OLLAMA_NB_ENGINE_ERROR): without it the engine tests fail under CI and
are skipped, with that reason, elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

MAKE_MODEL = Path(__file__).resolve().parent / "engine" / "make_model.py"
MODEL = "tiny"  # the chat model's alias
EMBED_MODEL = "tiny-embed"  # the same weights, loaded for embeddings
START_TIMEOUT = 60.0


def forward_mode() -> bool:
    """`tests/run --forward`: the shared stand-in forwards plain answers to the engine."""
    return os.environ.get("OLLAMA_NB_FORWARD") == "1"


def engine_python() -> str:
    python = os.environ.get("OLLAMA_NB_ENGINE_PYTHON", "")
    if python and os.path.exists(python):
        return python
    reason = os.environ.get("OLLAMA_NB_ENGINE_ERROR") or "OLLAMA_NB_ENGINE_PYTHON is not set"
    message = f"no real engine (llama-cpp-python): {reason}; tests/run sets it up"
    if os.environ.get("CI") or forward_mode():  # forward mode asked for the engine
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EngineServer:
    """`python -m llama_cpp.server` with two aliases of one tiny model: `tiny` (chat) and
    `tiny-embed` (embeddings, mean pooling). Requests queue (`interrupt_requests` off:
    by default a second request ends the first stream)."""

    def __init__(self, python: str, workdir: Path) -> None:
        self.workdir = workdir
        model = workdir / "tiny.gguf"
        subprocess.run([python, str(MAKE_MODEL), str(model)], check=True, capture_output=True)
        self.port = free_port()
        common = {"model": str(model), "n_ctx": 2048, "n_threads": 1, "n_batch": 512}
        config = {
            "host": "127.0.0.1",
            "port": self.port,
            "interrupt_requests": False,
            "models": [
                {**common, "model_alias": MODEL},
                {**common, "model_alias": EMBED_MODEL, "embedding": True},
            ],
        }
        config_file = workdir / "engine.json"
        config_file.write_text(json.dumps(config))
        self.log_path = workdir / "engine.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--config_file", str(config_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=workdir,
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the engine exited at start:\n{self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the engine did not answer within {START_TIMEOUT:g} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, after: int, timeout: float = 10.0) -> str:
        """The log past offset `after` once it holds `text` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            tail = self.log()[after:]
            if text in tail:
                return tail
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the engine's log:\n{tail[-2000:]}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used (Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


class ForwardingProxy:
    """A TCP proxy on loopback in front of the engine; subclasses decide what passes.

    Each connection gets a state of its own (`connection_state`). Every read from the
    client goes through `up`, every read from the engine through `down`, each returning
    what to forward (None: nothing); each direction is pumped on a thread of its own.
    When the client hangs up, `client_gone` is called and both ends are closed; when the
    engine does, both are closed too unless `closes_when_upstream_ends` is False."""

    closes_when_upstream_ends = True

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def connection_state(self) -> Any:
        return None

    def up(self, data: bytes, state: Any) -> bytes | None:
        return data

    def down(self, data: bytes, state: Any) -> bytes | None:
        return data

    def client_gone(self) -> None:
        pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            state = self.connection_state()
            for pipe in (self._client_to_engine, self._engine_to_client):
                threading.Thread(target=pipe, args=(client, upstream, state), daemon=True).start()

    def _client_to_engine(self, client: socket.socket, upstream: socket.socket, state: Any) -> None:
        _pump(client, upstream, lambda data: self.up(data, state))
        self.client_gone()
        for s in (upstream, client):
            s.close()

    def _engine_to_client(self, client: socket.socket, upstream: socket.socket, state: Any) -> None:
        _pump(upstream, client, lambda data: self.down(data, state))
        if self.closes_when_upstream_ends:
            for s in (upstream, client):
                s.close()

    def close(self) -> None:
        for s in self._sockets:
            s.close()


def _pump(
    source: socket.socket, sink: socket.socket, passing: Callable[[bytes], bytes | None]
) -> None:
    """Forward what `passing` lets through until `source` ends or either end fails."""
    try:
        while data := source.recv(65536):
            passed = passing(data)
            if passed is not None:
                sink.sendall(passed)
    except OSError:
        pass


class StallingProxy(ForwardingProxy):
    """Forwards a response until it has passed `events` Server-Sent Events, then forwards
    nothing more (the connection stays open): a server gone quiet mid-answer. When the
    client hangs up, it closes the upstream connection too."""

    closes_when_upstream_ends = False

    def __init__(self, upstream_port: int, events: int) -> None:
        self.events = events
        self.client_closed = threading.Event()
        super().__init__(upstream_port)

    def connection_state(self) -> list[int]:
        return [0]  # the events passed so far on this connection

    def down(self, data: bytes, seen: list[int]) -> bytes | None:
        if seen[0] >= self.events:
            return None  # stalled: read and dropped, so the server is not blocked
        seen[0] += data.count(b"data: ")
        return data

    def client_gone(self) -> None:
        self.client_closed.set()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """One engine for the whole run (import this fixture into a test module to use it)."""
    python = engine_python()
    server = EngineServer(python, Path(tmp_path_factory.mktemp("engine")))
    yield server
    server.close()
