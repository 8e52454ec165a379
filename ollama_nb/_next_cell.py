"""`--code` / `code=True`: put the answer's code in a new cell below the running one.

IPython's `set_next_input(code, replace=False)` is the way: in a kernel it becomes a
`set_next_input` payload on the cell's execute_reply, which JupyterLab, Notebook 7 and
VS Code turn into a new code cell below, not run; headless runners (nbclient, nbconvert,
papermill, nbval) ignore payloads, so there nothing is inserted and nothing else changes.
In terminal IPython the code becomes the next prompt's text. A payload travels only with
the reply of the cell that made it: a request that outlives its cell (`--background`)
or one of a batch's many answers has none to travel with (a usage error there).
IPython keeps one `set_next_input` payload per reply: the last one made in a cell wins.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._code import code_note, extract_code, finished

if TYPE_CHECKING:
    from ._result import OllamaResult
    from ._stream import Transcript, View

IN_A_CELL = "in a new cell below"
AT_THE_PROMPT = "at the next prompt"


@dataclass(frozen=True)
class NextInput:
    """Where code can go: the running shell's next input, described for the record."""

    shell: Any
    where: str

    def put(self, code: str) -> None:
        self.shell.set_next_input(code, replace=False)


def target_of(shell: Any) -> NextInput | None:
    """The next input of `shell`: a new cell in a kernel, the next prompt in a terminal."""
    if shell is None or not hasattr(shell, "set_next_input"):
        return None
    in_kernel = getattr(shell, "kernel", None) is not None
    return NextInput(shell, IN_A_CELL if in_kernel else AT_THE_PROMPT)


def next_input(display: bool) -> NextInput | None:
    """For the Python API: the running IPython's next input when the call shows itself
    (display=True, from the shell's own thread: a call from a worker thread or a script
    has no cell of its own), else None."""
    if not display or "IPython" not in sys.modules:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    from IPython import get_ipython

    return target_of(get_ipython())


class WithCode:
    """Passes view calls on; before the record is drawn, finds the answer's code, puts it
    where `target` says when the answer finished, and writes the record's line about it."""

    def __init__(self, view: View, target: NextInput | None) -> None:
        self._view = view
        self._target = target

    def start(self, model: str) -> None:
        self._view.start(model)

    def update(self, transcript: Transcript) -> None:
        self._view.update(transcript)

    def finish(self, result: OllamaResult) -> None:
        code = extract_code(result.text)
        failed = result.error is not None
        inserted = None
        if code is not None and self._target is not None and finished(result.done_reason, failed):
            self._target.put(code)
            inserted = self._target.where
        result.code = code
        result.code_note = code_note(code, result.done_reason, failed, inserted)
        self._view.finish(result)
