"""The errors raised by a kernel's cells, as plain text for prompts: `{Err}`, `{Err[n]}`.

One `ErrorRecorder` per shell, registered on IPython's `pre_run_cell`/`post_run_cell`
events from `%load_ext` on. It keeps, per execution count, the cell's source and its
traceback as plain text: no colour codes, no frames of IPython or ipykernel, at most
`LIMIT` characters keeping the end (the exception line is always kept). Errors that a
cell magic shows itself without raising (`%%time` does) are found through `sys.last_value`,
which IPython sets whenever it shows a traceback. Errors of `%%ollama`/`%ollama` cells
(usage errors, timeouts) are not recorded. Only text is kept, never the exception: its
frames would keep the cell's locals alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ._prompt import PromptVariableError

LIMIT = 6000  # characters of one error's text
SOURCE_LIMIT = 1500  # of which the cell's source takes at most this many
KEEP = 100  # errors remembered, the most recent ones
SEARCHED = 300  # recent cells searched for the code file a traceback names (IPython 7)
ATTRIBUTE = "_ollama_nb_errors"  # the shell's recorder
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_IPYTHON_INPUT = re.compile(r"<ipython-input-(\d+)-")


class ErrorRecorder:
    """Records the errors of one shell's cells; `field()` is what `{Err}` reads."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.errors: OrderedDict[int, str] = OrderedDict()  # execution count -> text
        self.sources: dict[int, str] = {}  # execution count -> the cell's source (%ollama fix)
        self._shown_before: Any = None  # sys.last_value when the running cell began
        self._source = ""
        # A cell's code file name -> its execution count, where IPython has no map of its
        # own (IPython 7): tracebacks then say `In [3]`, not `/tmp/ipykernel_1/2.py`.
        self._cells: OrderedDict[str, int] = OrderedDict()

    # -- IPython events -----------------------------------------------------------------

    def register(self) -> ErrorRecorder:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        setattr(self.shell, ATTRIBUTE, self)
        return self

    def unregister(self) -> None:
        for event, callback in (
            ("pre_run_cell", self.pre_run_cell),
            ("post_run_cell", self.post_run_cell),
        ):
            with contextlib.suppress(ValueError):  # not registered (any more)
                self.shell.events.unregister(event, callback)
        if getattr(self.shell, ATTRIBUTE, None) is self:
            setattr(self.shell, ATTRIBUTE, None)

    def pre_run_cell(self, info: Any = None) -> None:
        self._shown_before = getattr(sys, "last_value", None)
        self._source = getattr(info, "raw_cell", None) or ""

    def post_run_cell(self, result: Any = None) -> None:
        try:
            self._record(result)
        except Exception:
            pass
        finally:
            self._shown_before = None

    def cell_label(self, filename: str) -> str | None:
        """`In [3]` for the code file of a cell, else None."""
        format_name = getattr(getattr(self.shell, "compile", None), "format_code_name", None)
        if format_name is not None:
            named = format_name(filename)
            if named:
                return named[1].replace("In[", "In [")
        match = _IPYTHON_INPUT.match(filename)
        if match:
            return f"In [{match[1]}]"
        count = self._cells.get(filename) or self._find_cell(filename)
        return f"In [{count}]" if count else None

    def _find_cell(self, filename: str) -> int | None:
        """IPython 7 under ipykernel names a cell's code file from its source: look for it
        among the recent cells of the history (only when an error is being written)."""
        get_name = getattr(getattr(self.shell, "compile", None), "get_code_name", None)
        history = getattr(self.shell, "history_manager", None)
        if get_name is None or history is None or not filename.endswith(".py"):
            return None
        raw, parsed = history.input_hist_raw, history.input_hist_parsed
        found = None
        for count in range(len(raw) - 1, max(len(raw) - SEARCHED, 0), -1):
            name = get_name(raw[count], parsed[count] if count < len(parsed) else "", count)
            self._cells[name] = count
            if name == filename:
                found = count
                break
        while len(self._cells) > SEARCHED:
            self._cells.popitem(last=False)
        return found

    def _record(self, result: Any) -> None:
        error = None
        if result is not None:
            error = result.error_in_exec or result.error_before_exec
        if error is None:
            # Shown by a cell magic that catches it (`%%time`), or the cell was interrupted
            # as an async cell (ipykernel then passes no result).
            shown = getattr(sys, "last_value", None)
            if shown is not None and shown is not self._shown_before:
                error = shown
        if not isinstance(error, BaseException):
            return
        info = getattr(result, "info", None)
        source = getattr(info, "raw_cell", None) or self._source
        if _from_ollama_cell(source, error):
            return
        count = getattr(result, "execution_count", None)
        if not isinstance(count, int):
            count = self.shell.execution_count - 1
        self.errors[count] = error_text(source, error, count, self.cell_label)
        self.sources[count] = source
        self.errors.move_to_end(count)
        while len(self.errors) > KEEP:
            dropped, _ = self.errors.popitem(last=False)
            self.sources.pop(dropped, None)

    # -- what `{Err}` reads -------------------------------------------------------------

    def latest(self) -> str:
        if not self.errors:
            raise PromptVariableError(
                "the prompt uses {Err}, but no cell has raised an error since %load_ext ollama_nb"
            )
        return next(reversed(self.errors.values()))

    def of_cell(self, count: Any) -> str:
        if not isinstance(count, int) or isinstance(count, bool):
            raise PromptVariableError(
                f"{{Err[{count}]}}: Err takes a cell's execution count, e.g. {{Err[3]}}"
            )
        if count < 0 and -count <= len(self.errors):
            return list(self.errors.values())[count]
        if count not in self.errors:
            recorded = ", ".join(str(n) for n in self.errors) or "none"
            raise PromptVariableError(
                f"{{Err[{count}]}}: no error recorded for cell [{count}] (cells with an"
                f" error: {recorded})"
            )
        return self.errors[count]

    def field(self) -> ErrField:
        return ErrField(self)


class ErrField:
    """The value of `Err` in a prompt: formats as the latest error; `Err[n]` is cell n's."""

    def __init__(self, recorder: ErrorRecorder) -> None:
        self._recorder = recorder

    def __getitem__(self, count: Any) -> str:
        return self._recorder.of_cell(count)

    def __format__(self, spec: str) -> str:
        return format(self._recorder.latest(), spec)

    def __str__(self) -> str:
        return self._recorder.latest()

    def __repr__(self) -> str:
        return self._recorder.latest()


def recorder_of(shell: Any) -> ErrorRecorder | None:
    return getattr(shell, ATTRIBUTE, None) if shell is not None else None


def prompt_namespace(shell: Any, namespace: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where a cell's prompt fields are looked up: the notebook's names, and `Err` where
    the notebook has no `Err` of its own."""
    recorder = recorder_of(shell)
    if recorder is None or "Err" in namespace:
        return namespace
    return ChainMap(namespace, {"Err": recorder.field()})  # type: ignore[arg-type]


def _from_ollama_cell(source: str, error: BaseException) -> bool:
    """Errors of `%%ollama`/`%ollama` cells: a `%%ollama` cell (under `%%time` too), an
    error of this package in a cell with a `%ollama` line, or a usage error of ours."""
    magics = {line.split(maxsplit=1)[0] for line in source.splitlines() if line.strip()}
    if "%%ollama" in magics:
        return True
    if "%ollama" in magics and type(error).__module__.startswith("ollama_nb"):
        return True
    return str(error).startswith(("%%ollama:", "%ollama:"))


# -- plain text -----------------------------------------------------------------------


def _hidden_dirs() -> tuple[str, ...]:
    """Packages whose frames are the kernel's machinery, not the user's code."""
    dirs = []
    for name in ("IPython", "ipykernel"):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            dirs.append(os.path.dirname(path) + os.sep)
    return tuple(dirs)


def _keep(frame: traceback.FrameSummary, hidden: tuple[str, ...]) -> bool:
    filename = frame.filename or ""
    return not filename.startswith(hidden) and not filename.startswith("<decorator-gen-")


def _without_kernel_frames(
    exc: traceback.TracebackException,
    hidden: tuple[str, ...],
    label: Callable[[str], str | None],
) -> None:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [frame for frame in current.stack if _keep(frame, hidden)]
        for frame in kept:  # lines are already read: the name is only what is shown
            frame.filename = label(frame.filename) or frame.filename
        current.stack = traceback.StackSummary.from_list(kept)
        if isinstance(getattr(current, "filename", None), str):  # a SyntaxError's own place
            current.filename = label(current.filename) or current.filename
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(getattr(current, "exceptions", None) or ())  # exception groups


def traceback_text(error: BaseException, label: Callable[[str], str | None] | None = None) -> str:
    """The traceback of `error` as plain text, without IPython's and ipykernel's frames;
    `label` names a cell's code file (`In [3]`)."""
    exc = traceback.TracebackException(
        type(error), error, error.__traceback__, capture_locals=False
    )
    _without_kernel_frames(exc, _hidden_dirs(), label or (lambda _: None))
    text = "".join(exc.format())
    if len(exc.stack) == 0 and text.startswith("Traceback (most recent call last):\n"):
        text = text.split("\n", 1)[1]  # no frame left to show
    return _ANSI.sub("", text).rstrip("\n")


def error_text(
    source: str,
    error: BaseException,
    count: int | None,
    label: Callable[[str], str | None] | None = None,
    limit: int = LIMIT,
) -> str:
    """The cell's source, then its traceback; at most about `limit` characters."""
    source = _ANSI.sub("", source).strip("\n")
    if len(source) > SOURCE_LIMIT:
        cut = len(source) - SOURCE_LIMIT
        source = f"{source[:SOURCE_LIMIT]}\n[… {cut:,} more characters of the cell left out]"
    title = f"In [{count}]" if count is not None else "the cell"
    head = f"{title}:\n{source}\n\n"
    trace = traceback_text(error, label)
    room = max(limit - len(head), 1000)
    if len(trace) > room:
        trace = _keep_end(trace, room)
    return head + trace


def _keep_end(trace: str, room: int) -> str:
    """The end of `trace` in `room` characters; its last line (the exception) is always
    kept, shortened in its middle only when it alone is too long."""
    body, newline, last = trace.rpartition("\n")
    body += newline
    if len(last) > room // 2:
        half = room // 4
        cut = len(last) - 2 * half
        last = f"{last[:half]}[… {cut:,} characters left out …]{last[-half:]}"
    space = max(room - len(last), 0)
    if len(body) > space:
        dropped = len(body) - space
        body = f"[… {dropped:,} characters of the traceback left out …]\n" + body[-space:]
    return body + last
