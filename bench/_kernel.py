"""A real kernel driven over ZMQ (tests/kernel_driver.py), plus what the benchmark reads
from outside it: its process's CPU time and RSS, and per-cell IOPub accounting."""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kernel_driver import Cell, KernelDriver, Msg  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OPEN_BLOCK = "ollama-nb-open"  # the class of the live view's open block (its HTML widget)
ROOT_VIEW = {"_view_count": 0}  # the VBox that asks front ends to report drawing it
ELAPSED_LABEL = {"value": "0.0 s"}  # the elapsed-time label: one update per view refresh
RESULT_EXPR = (  # no copy of the text: a 2 MB transient would skew the RSS figure
    "{'elapsed': _ollama.elapsed, 'chars': len(_ollama.text), 'chunks': _ollama.chunks,"
    " 'bytes': len(_ollama.text) if _ollama.text.isascii() else len(_ollama.text.encode()),"
    " 'done_reason': _ollama.done_reason, 'timeout_kind': _ollama.timeout_kind}"
)


@dataclass
class CellRun:
    """One `%%ollama` cell as the front end saw it, and what the kernel stored."""

    wall: float  # execute_request sent -> execute_reply received, seconds
    status: str  # of the execute_reply: ok / error
    result: dict[str, Any]  # fields of `_ollama` (RESULT_EXPR)
    cpu_seconds: float  # kernel process CPU (user + system) while the cell ran
    iopub_bytes: int
    iopub_messages: int
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    ui_updates: int = 0  # state updates of the elapsed label
    ui_updates_max_1s: int = 0  # most of them that arrived within any one second
    live_chars: int = 0  # answer characters shown live (finished blocks + the last open one)

    @property
    def elapsed(self) -> float:
        return float(self.result.get("elapsed", float("nan")))


class BenchKernel:
    """One kernel from `python` with `%load_ext ollama_nb`; cells are `%%ollama` cells."""

    def __init__(self, python: str, host: str) -> None:
        self.driver = KernelDriver(python, env={"OLLAMA_HOST": host, "OLLAMA_MODEL": ""})
        self.driver.ok("%load_ext ollama_nb")
        self.pid: int = self.driver.km.provisioner.process.pid  # type: ignore[union-attr]
        self.python = python
        self.last_messages: list[Msg] = []  # every message of the last completed cell

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> BenchKernel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the kernel process, from outside ------------------------------------------------

    def cpu_seconds(self) -> float:
        """utime + stime of the kernel process (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self, collect: bool = True) -> int:
        """VmRSS of the kernel process, after a `gc.collect()` in it when `collect`."""
        if collect:
            self.driver.value("__import__('gc').collect()")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def version(self, module: str) -> str:
        return str(self.driver.value(f"__import__({module!r}).__version__"))

    # -- cells ---------------------------------------------------------------------------

    def submit(self, line: str, *, show: bool, prompt: str = "Go.") -> Cell:
        """Start a `%%ollama` cell; with `show`, answer as a front end that drew the view."""
        self.driver.value("globals().pop('_ollama', None) is None")  # no stale result
        code = f"%%ollama {line}\n{prompt}"
        return self.driver.submit_drawn(code, 10) if show else self.driver.submit(code)

    def complete(self, cell: Cell, cpu_before: float, timeout: float = 60) -> CellRun:
        """Wait for `cell` to end; account for its IOPub traffic; leave the kernel idle."""
        self.driver.finish(cell, timeout)
        cpu = self.cpu_seconds() - cpu_before
        assert cell.reply is not None
        run = CellRun(
            wall=cell.reply.at - cell.sent_at,
            status=cell.status,
            result={},
            cpu_seconds=cpu,
            iopub_bytes=0,
            iopub_messages=0,
            live_chars=_live_chars(cell),
        )
        _account_iopub(run, cell, self.driver.messages)
        _account_updates(run, cell)
        run.result = self.driver.value(f"{RESULT_EXPR} if '_ollama' in globals() else {{}}")
        self.last_messages = list(self.driver.messages)  # what settle() is about to drop
        self.driver.settle()
        return run

    def run(self, line: str, *, show: bool, timeout: float = 60) -> CellRun:
        cpu = self.cpu_seconds()
        return self.complete(self.submit(line, show=show), cpu, timeout)


def _live_chars(cell: Cell) -> int:
    """Characters of the text the cell showed live: printed text (a print loop), or for
    the live view every finished-block display plus the last open-block display (the one
    after a `clear_output`), words joined by one space (the stand-in's filler has single
    spaces)."""
    printed = cell.stream_text("stdout")
    if printed:
        return len(printed)
    finished: list[str] = []
    last_open = ""
    after_clear = False
    for msg in cell.messages:
        if msg.type == "clear_output":
            after_clear = True
        elif msg.type == "display_data" and set(msg.content["data"]) == {"text/html"}:
            if after_clear:
                last_open = msg.content["data"]["text/html"]
            else:
                finished.append(msg.content["data"]["text/html"])
            after_clear = False
    text = html.unescape(re.sub(r"<[^>]+>", " ", "".join(finished) + last_open))
    return len(" ".join(text.split()))


def _account_iopub(run: CellRun, cell: Cell, messages: list[Msg]) -> None:
    """All IOPub messages of the cell (parent = the cell) plus comm messages during it."""
    own = [
        m
        for m in messages
        if m.channel == "iopub"
        and m.at >= cell.sent_at
        and (m.parent_id == cell.msg_id or m.type.startswith("comm"))
    ]
    for msg in own:
        size = msg.size()
        run.iopub_bytes += size
        run.bytes_by_type[msg.type] = run.bytes_by_type.get(msg.type, 0) + size
    run.iopub_messages = len(own)


def _account_updates(run: CellRun, cell: Cell) -> None:
    label = cell.widget(**ELAPSED_LABEL)
    if label is None:
        return
    times = sorted(m.at for m in cell.updates_of(label.content["comm_id"]))
    run.ui_updates = len(times)
    first = 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        run.ui_updates_max_1s = max(run.ui_updates_max_1s, last - first + 1)
