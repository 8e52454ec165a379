"""What the running kernel can do, and a way to publish outputs to the cell that started
a request even after that cell has returned (`--background`).

Measured (see README, "How Stop reaches a running cell"): a widget click reaches a
running *async* cell natively on ipykernel >= 7.4; on 6.x only if the cell pumps the
kernel's shell messages itself (jupyter-ui-poll); on 7.0-7.3 not at all.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

ClickDelivery = Literal["native", "pump", "none"]


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


class CellOutput:
    """Publishes to the output area of the cell that was running when this was made.

    Messages carry that cell's parent header explicitly, so a background request keeps
    writing to its own cell however many cells ran since (on ipykernel 6 the kernel's
    "current parent" moves on with each new cell).
    """

    def __init__(self, kernel: Any) -> None:
        self._session = kernel.session
        self._socket = kernel.iopub_socket
        self._parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else {}
        self.msg_id: str = self._parent.get("header", {}).get("msg_id", "")

    def _send(self, msg_type: str, content: dict[str, Any], topic: bytes) -> None:
        self._session.send(self._socket, msg_type, content, parent=self._parent, ident=topic)

    def display(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        sys.stdout.flush()
        content = {"data": data, "metadata": metadata or {}, "transient": {}}
        self._send("display_data", content, b"display_data")

    def clear(self, wait: bool = False) -> None:
        sys.stdout.flush()
        self._send("clear_output", {"wait": wait}, b"clear_output")

    def stream(self, text: str, name: str = "stdout") -> None:
        self._send("stream", {"name": name, "text": text}, f"stream.{name}".encode())
