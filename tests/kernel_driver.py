"""Drive a real IPython kernel over ZMQ the way a front end does.

Single-threaded on purpose: ZMQ sockets are not thread-safe, so one loop polls IOPub and
shell and records every message with its arrival time; tests wait on predicates over
those records, always with a deadline. A button click is the shell `comm_msg` a browser
sends; "the front end drew the view" is the `_view_count` update a browser sends.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass
class Msg:
    at: float
    channel: str
    raw: dict[str, Any]

    @property
    def type(self) -> str:
        return self.raw["header"]["msg_type"]

    @property
    def parent_id(self) -> str:
        return self.raw.get("parent_header", {}).get("msg_id", "")

    @property
    def content(self) -> dict[str, Any]:
        return self.raw["content"]

    def size(self) -> int:
        """Bytes this message takes as JSON (header, parent, metadata, content)."""
        parts = ("header", "parent_header", "metadata", "content")
        return sum(len(json.dumps(self.raw.get(p, {}), default=str)) for p in parts)


@dataclass
class Cell:
    """One execute request and what came back for it."""

    msg_id: str
    sent_at: float
    driver: KernelDriver
    messages: list[Msg] = field(default_factory=list)

    @property
    def reply(self) -> Msg | None:
        return next((m for m in self.messages if m.type == "execute_reply"), None)

    @property
    def idle(self) -> bool:
        return any(
            m.type == "status" and m.content["execution_state"] == "idle" for m in self.messages
        )

    @property
    def status(self) -> str:
        assert self.reply is not None, "no execute_reply yet"
        return self.reply.content["status"]

    def outputs(self) -> list[Msg]:
        kinds = {"stream", "display_data", "execute_result", "error", "clear_output"}
        return [m for m in self.messages if m.type in kinds]

    def displays(self) -> list[dict[str, Any]]:
        return [m.content["data"] for m in self.messages if m.type == "display_data"]

    def records(self) -> list[dict[str, Any]]:
        """Displayed bundles other than the live widget view: the static record."""
        return [d for d in self.displays() if WIDGET_MIME not in d]

    def stream_text(self, name: str = "stdout") -> str:
        return "".join(
            m.content["text"]
            for m in self.messages
            if m.type == "stream" and m.content["name"] == name
        )

    def error(self) -> dict[str, Any] | None:
        msg = next((m for m in self.messages if m.type == "error"), None)
        return msg.content if msg else None

    def error_text(self) -> str:
        """What the user sees of an error: tracebacks, or the stderr line of a UsageError."""
        err = self.error()
        return "\n".join(err["traceback"]) if err else self.stream_text("stderr")

    @property
    def ename(self) -> str | None:
        return self.reply.content.get("ename") if self.reply else None

    def comm_opens(self) -> list[Msg]:
        # A live view opens its widgets under "<cell msg_id>/ollama-nb-view" (so headless
        # runners do not save their models): they are this cell's too.
        own = (self.msg_id, f"{self.msg_id}/ollama-nb-view")
        return [m for m in self.driver.messages if m.type == "comm_open" and m.parent_id in own]

    def widget(self, **state: Any) -> Msg | None:
        """The comm_open of this cell's widget whose state has all of `state`."""
        for msg in self.comm_opens():
            have = msg.content["data"].get("state", {})
            if all(have.get(k) == v for k, v in state.items()):
                return msg
        return None

    def updates_of(self, comm_id: str) -> list[Msg]:
        return [
            m
            for m in self.driver.messages
            if m.type == "comm_msg" and m.content["comm_id"] == comm_id and m.at >= self.sent_at
        ]


class KernelDriver:
    """A running kernel from `python` (any environment) with a polling client."""

    def __init__(self, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ollama-nb-kernel-")
        spec_dir = Path(self._dir.name) / "kernels" / "under-test"
        spec_dir.mkdir(parents=True)
        argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "under test", "language": "python"})
        )
        self.km = KernelManager(
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
            kernel_name="under-test",
        )
        kernel_env = {**os.environ, **(env or {})}
        kernel_env.pop("PYTHONPATH", None)
        self.km.start_kernel(env=kernel_env, cwd=self._dir.name)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.messages: list[Msg] = []
        self._pending: list[Cell] = []
        self._poller = zmq.Poller()
        self._poller.register(self.kc.iopub_channel.socket, zmq.POLLIN)
        self._poller.register(self.kc.shell_channel.socket, zmq.POLLIN)

    # -- receiving ----------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        """Receive whatever arrives within `timeout` seconds (returns early on arrival)."""
        ready = dict(self._poller.poll(max(0, int(timeout * 1000))))
        for name, channel in (("iopub", self.kc.iopub_channel), ("shell", self.kc.shell_channel)):
            if channel.socket in ready:
                while channel.msg_ready():
                    msg = channel.get_msg(timeout=0)
                    self.messages.append(Msg(time.monotonic(), name, msg))

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout} s for {what}")
            self.pump(min(left, 0.05))

    # -- sending ------------------------------------------------------------------------

    def submit(self, code: str, **kwargs: Any) -> Cell:
        # Each cell is its own run, as when a user runs one cell after another: without
        # this, ipykernel 6 aborts a request that arrives just after a failed cell (it
        # stops aborting on a timer that a busy loop may fire after the request is queued).
        kwargs.setdefault("stop_on_error", False)
        msg_id = self.kc.execute(code, **kwargs)
        cell = Cell(msg_id, time.monotonic(), self)
        self._pending.append(cell)
        return cell

    def settle(self, timeout: float = 15) -> None:
        """After a failed test: interrupt whatever still runs, so the next test starts idle."""
        for cell in self._pending:
            self.collect(cell)
        running = [c for c in self._pending if c.reply is None]
        if running:
            self.interrupt()
            for cell in running:
                self.finish(cell, timeout)
        self._pending.clear()
        self.messages.clear()

    def collect(self, cell: Cell) -> None:
        cell.messages = [m for m in self.messages if m.parent_id == cell.msg_id]

    def finish(self, cell: Cell, timeout: float = 30) -> Cell:
        """Wait for the reply and the idle status of `cell`."""

        def done() -> bool:
            self.collect(cell)
            return cell.reply is not None and cell.idle

        self.wait_for(done, timeout, f"cell {cell.msg_id} to finish")
        return cell

    def run(self, code: str, timeout: float = 30) -> Cell:
        return self.finish(self.submit(code), timeout)

    def submit_drawn(self, code: str, timeout: float = 30) -> Cell:
        """Start a cell whose live view a front end draws as soon as it is shown (which is
        what a `--background` cell waits for before it returns; headless, it never is)."""
        cell = self.submit(code)

        def view_or_reply() -> Any:
            self.collect(cell)
            return cell.widget(_view_count=0) or cell.reply

        shown = self.wait_for(view_or_reply, timeout, "the live view or the reply")
        if isinstance(shown, Msg) and shown.type == "comm_open":
            self.show_view(shown.content["comm_id"])
        return cell

    def run_drawn(self, code: str, timeout: float = 30) -> Cell:
        """`submit_drawn`, then wait for the cell to end."""
        return self.finish(self.submit_drawn(code, timeout), timeout)

    def ok_drawn(self, code: str, timeout: float = 30) -> Cell:
        cell = self.run_drawn(code, timeout)
        assert cell.status == "ok", cell.error_text() or cell.status
        return cell

    def ok(self, code: str, timeout: float = 30) -> Cell:
        cell = self.run(code, timeout)
        assert cell.status == "ok", cell.error_text() or cell.status
        return cell

    def value(self, expression: str, timeout: float = 30) -> Any:
        """The JSON value of `expression` evaluated in the kernel."""
        code = f"__import__('json').dumps({expression}, default=str)"
        cell = self.finish(self.submit("", silent=True, user_expressions={"v": code}), timeout)
        assert "user_expressions" in cell.reply.content, cell.reply.content
        result = cell.reply.content["user_expressions"]["v"]
        assert result["status"] == "ok", result
        return json.loads(ast.literal_eval(result["data"]["text/plain"]))

    def send_comm(self, comm_id: str, data: dict[str, Any]) -> float:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return time.monotonic()

    def click(self, comm_id: str) -> float:
        """What a browser sends when the button is clicked; returns when it was sent."""
        return self.send_comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def show_view(self, comm_id: str) -> float:
        """What a front end sends once it has drawn a widget that tracks its views."""
        return self.send_comm(
            comm_id, {"method": "update", "state": {"_view_count": 1}, "buffer_paths": []}
        )

    def interrupt(self) -> float:
        self.km.interrupt_kernel()
        return time.monotonic()

    def close(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        finally:
            self._dir.cleanup()
