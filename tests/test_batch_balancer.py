"""Past one machine: a batch through Debian's nginx in front of several stand-ins.

The README recipe (`upstream` with `least_conn`, no buffering, long proxy timeouts) in a
config of its own, in a temp dir, on loopback. tests/run installs nginx
(OLLAMA_NB_NGINX); without it these tests fail under CI and are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from test_batch import job

from ollama_nb._batch import run_batch
from ollama_nb._batch_result import OllamaBatch
from ollama_nb._batch_view import NullBatchView
from ollama_nb._stream import StopControl
from ollama_nb.testing import StandInServer

IN_CI = bool(os.environ.get("CI"))

CONFIG = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream ollama {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    path = os.environ.get("OLLAMA_NB_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(path):
        message = "no nginx (tests/run installs Debian's nginx-light: OLLAMA_NB_NGINX)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def nginx(tmp: Path, backends: list[StandInServer]) -> Iterator[str]:
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{b.port};" for b in backends)
    conf = tmp / "nginx.conf"
    conf.write_text(CONFIG.format(tmp=tmp, servers=servers, port=port))
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"nginx did not start: {err}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def standins(n: int, **knobs: object) -> Iterator[list[StandInServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(StandInServer(**knobs)) for _ in range(n)]


def generates(server: StandInServer) -> list[object]:
    return [r for r in server.requests if r.path == "/api/generate"]


def test_batch_through_nginx_uses_both_servers(tmp_path: Path) -> None:
    with (
        standins(2, num_parallel=2, token_interval=0.01, tokens=8) as (a, b),
        nginx(tmp_path, [a, b]) as url,
    ):
        batch = asyncio.run(
            run_batch(job(url, list(range(40)), parallel=4), NullBatchView(), StopControl())
        )
        served = [len(generates(a)), len(generates(b))]
    print(f"\nrequests per server: {served}")
    assert batch.counts() == {"stop": 40}, [str(r.error) for r in batch if r.error]
    assert min(served) >= 5 and sum(served) == 40  # both worked, nothing sent twice


def test_a_server_killed_mid_batch_loses_only_what_it_was_streaming(tmp_path: Path) -> None:
    # One slot per server: with 6 in flight over 3 servers each streams one and queues one.
    with (
        standins(3, num_parallel=1, token_interval=0.03, tokens=10) as servers,
        nginx(tmp_path, servers) as url,
    ):
        doomed = servers[2]

        async def main() -> tuple[OllamaBatch, list[object]]:
            task = asyncio.ensure_future(
                run_batch(job(url, list(range(30)), parallel=6), NullBatchView(), StopControl())
            )
            deadline = time.monotonic() + 20
            while not any(r.chunks_sent >= 2 and not r.completed for r in generates(doomed)):
                assert time.monotonic() < deadline, "the third server never got work"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(doomed.stop)
            return await task, generates(doomed)

        batch, on_doomed = asyncio.run(main())
        sent = sum(len(generates(s)) for s in servers)
    streaming = [r for r in on_doomed if r.chunks_sent > 0 and not r.completed]
    waiting = [r for r in on_doomed if r.chunks_sent == 0]
    print(
        f"\nkilled server: {len(streaming)} streaming, {len(waiting)} waiting;"
        f" batch: {batch.counts()}"
    )
    assert len(streaming) >= 1
    # Lost: exactly the answers that had begun on the killed server.
    assert len(batch.failed) == len(streaming)
    for position in batch.failed:
        result = batch[position]
        assert type(result.error).__name__ == "OllamaConnectionError"
        assert result.text  # what arrived is kept
    # Everything else finished, the waiting ones after being sent once more.
    assert batch.counts()["stop"] == 30 - len(streaming)
    assert sent == 30 + len(waiting)
