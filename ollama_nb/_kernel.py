"""What the running kernel can do (and `clicks_reach_running_cell`, which makes a Stop
click reach a running async cell where it can), and a way to publish outputs to the cell
that started a request even after that cell has returned (`--background`).

Measured (see README, "How Stop reaches a running cell"): a widget click reaches a
running *async* cell natively on ipykernel >= 7.4; on 6.x only if the cell pumps the
kernel's shell messages itself (jupyter-ui-poll); on 7.0-7.3 not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

ClickDelivery = Literal["native", "pump", "none"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Appended to a cell's msg_id in the parent header of its live views' comm_opens.
VIEW_SUFFIX = "/ollama-nb-view"
HINT_KERNEL = "this ipykernel (7.0-7.3) cannot deliver clicks to a running cell: use Interrupt (■)"
PUMP_SECONDS = 0.02  # how often a running cell hands shell messages to an ipykernel 6


def current_kernel() -> Any | None:
    """The ipykernel kernel object, or None in terminal IPython / plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def ipykernel_version() -> tuple[int, int]:
    try:
        import ipykernel
    except ImportError:
        return (0, 0)
    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in ipykernel.__version__.split("."))
    return (major, minor)


def click_delivery() -> ClickDelivery:
    """How a Stop click can reach a running async cell on this kernel."""
    version = ipykernel_version()
    if version >= (7, 4):
        return "native"
    if version[0] == 6:
        return "pump"
    return "none"


@contextlib.asynccontextmanager
async def clicks_reach_running_cell() -> AsyncIterator[str | None]:
    """Make a Stop click reach this running async cell where the kernel allows it.

    Yields None when it will, else the hint the disabled button shows.
    """
    delivery = click_delivery()
    if delivery != "pump":
        yield HINT_KERNEL if delivery == "none" else None
        return
    # ipykernel 6: a click reaches the cell only if the cell hands shell messages to the
    # kernel itself. (On 7.x that same pump breaks the kernel, hence the version check.)
    from jupyter_ui_poll import ui_events

    async with ui_events() as poll:
        pump = asyncio.ensure_future(_pump(poll))
        try:
            yield None
        finally:
            pump.cancel()


async def _pump(poll: Callable[[int], Any]) -> None:
    while True:
        await poll(10)
        await asyncio.sleep(PUMP_SECONDS)


def flush_stdout() -> None:
    """Send what the cell printed before an output that must follow it.

    ipykernel's flush waits for a round trip through its IOPub thread (1-2 ms, more on a
    busy machine), once per display or update: only pay it when something is pending.
    `_flush_pending` (ipykernel 5-7) is set by every write until the IOPub thread sends.
    """
    if getattr(sys.stdout, "_flush_pending", True):
        sys.stdout.flush()


class CellOutput:
    """Publishes to the output area of the cell that was running when this was made.

    Messages carry that cell's parent header explicitly, so a background request keeps
    writing to its own cell however many cells ran since (on ipykernel 6 the kernel's
    "current parent" moves on with each new cell).

    Made while `%%capture` captures the cell (IPython swaps in a capturing display
    publisher), outputs go to IPython's publisher and `sys.stdout` instead, so they are
    captured; a live widget view is not shown there (captured, it would be a dead widget).
    """

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel
        self._session = kernel.session
        self._socket = kernel.iopub_socket
        self._parent = current_parent(kernel)
        self.msg_id: str = self._parent.get("header", {}).get("msg_id", "")
        self._capturing = _capturing_publisher()
        self._shell = getattr(kernel, "shell", None)
        self._execution_count = getattr(self._shell, "execution_count", None)

    @property
    def captured(self) -> bool:
        return self._capturing is not None

    def _send(
        self,
        msg_type: str,
        content: dict[str, Any],
        topic: bytes,
        parent: dict[str, Any] | None = None,
    ) -> None:
        self._session.send(
            self._socket, msg_type, content, parent=parent or self._parent, ident=topic
        )

    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        display_id: str | None = None,
    ) -> None:
        flush_stdout()
        if self._capturing is not None:
            if set(data) != {WIDGET_MIME}:
                self._capturing.publish(data=data, metadata=metadata or {})
            return
        transient = {"display_id": display_id} if display_id else {}
        content = {"data": data, "metadata": metadata or {}, "transient": transient}
        self._send("display_data", content, b"display_data")

    def update(
        self,
        display_id: str,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
    ) -> None:
        """Replace what an earlier `display(..., display_id=)` showed, in place."""
        if self._capturing is not None:
            return
        flush_stdout()
        content = {
            "data": data,
            "metadata": metadata or {},
            "transient": {"display_id": display_id},
        }
        self._send("update_display_data", content, b"update_display_data", parent)

    @property
    def cell_ended(self) -> bool:
        """Whether the cell this output belongs to has ended (IPython counts it then)."""
        count = getattr(self._shell, "execution_count", None)
        return count is not None and count != self._execution_count

    def update_elsewhere(
        self, display_id: str, data: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        """Update a display of this ended cell with the parent of the cell running now, or
        else of the next cell to run: a headless runner (nbclient) reads only the running
        cell's messages, and applies a display update to every output with that id."""
        if self._capturing is not None or self._shell is None:
            return
        now = self.moved_on()
        if now is not None:
            self.update(display_id, data, metadata, parent=now)
            return
        events = self._shell.events

        def on_next_cell(*_args: Any) -> None:
            events.unregister("pre_execute", on_next_cell)
            later = self.moved_on()
            if later is not None:
                self.update(display_id, data, metadata, parent=later)

        events.register("pre_execute", on_next_cell)

    def moved_on(self) -> dict[str, Any] | None:
        """The parent header of the request the kernel handles now, when that is not this
        output's cell (a background request finishing while a later cell runs)."""
        now = latest_parent(self._kernel)
        now_id = now.get("msg_id") or (now.get("header") or {}).get("msg_id", "")
        return now if now_id and now_id != self.msg_id else None

    @contextlib.contextmanager
    def comms_unrecorded(self) -> Iterator[None]:
        """Widgets made inside open their comms under a parent header of their own.

        Headless runners (nbclient, nbconvert, papermill) save the state of every widget
        opened by the cell they run in `metadata.widgets`, closed ones too, so a saved
        notebook would carry the dead models of every live view. They read only messages
        whose parent is the running cell; front ends open a comm whatever its parent.
        Later state updates carry the cell's parent, but without a model name a runner
        never saves them.
        """
        kernel = self._kernel
        if self._capturing is not None or "get_parent" in vars(kernel):
            yield
            return
        real = current_parent(kernel)
        header = dict(real.get("header") or {})
        header["msg_id"] = f"{header.get('msg_id', '')}{VIEW_SUFFIX}"
        own = {**real, "header": header}
        kernel.get_parent = lambda *_args, **_kwargs: own
        try:
            yield
        finally:
            del kernel.get_parent

    def clear(self, wait: bool = False) -> None:
        if self._capturing is not None:
            return  # never clear what %%capture collected from the rest of the cell
        flush_stdout()
        self._send("clear_output", {"wait": wait}, b"clear_output")

    def stream(self, text: str, name: str = "stdout") -> None:
        if self._capturing is not None:
            target = sys.stderr if name == "stderr" else sys.stdout
            target.write(text)
            return
        self._send("stream", {"name": name, "text": text}, f"stream.{name}".encode())


def current_parent(kernel: Any) -> dict[str, Any]:
    """The header of the shell request the kernel is handling now (ipykernel 6.17+)."""
    if hasattr(kernel, "get_parent"):
        return kernel.get_parent("shell") or {}
    return getattr(kernel, "_parent_header", None) or {}


def latest_parent(kernel: Any) -> dict[str, Any]:
    """The parent of the latest shell request, from any task or thread. (On ipykernel 7
    `get_parent` answers for the calling context: a background task still sees the cell
    that started it. Its display publisher also keeps the latest parent globally.)"""
    publisher = getattr(getattr(kernel, "shell", None), "display_pub", None)
    latest = getattr(publisher, "_parent_header_global", None)
    if isinstance(latest, dict) and latest:
        return latest
    return current_parent(kernel)


def _capturing_publisher() -> Any | None:
    """IPython's display publisher while `%%capture` (capture_output) runs, else None."""
    try:
        from IPython import get_ipython
        from IPython.core.displaypub import CapturingDisplayPublisher
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    return publisher if isinstance(publisher, CapturingDisplayPublisher) else None
