"""A `%%ollama --each NAME` cell: one prompt over the elements of a notebook variable.

`_magics` parses the line and dispatches here; the batch itself runs in `_batch`. In a
kernel the cell runs as an async cell with the widget view and a working Stop; on the
synchronous path (terminal IPython, `%autoawait off`) it runs on a worker thread's loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from IPython.core.error import UsageError

from ._batch import prepare_batch, run_batch
from ._batch_result import OllamaBatch
from ._batch_view import TextBatchView, WidgetBatchView, live_batch_view
from ._exceptions import RequestInterrupted
from ._kernel import clicks_reach_running_cell, current_kernel
from ._options import parse_line, to_ask
from ._stream import StopControl
from ._sync import run_in_thread

INTERRUPTED_CELL = "the batch was interrupted; _ollama holds what it did (unstarted: skipped)"
NOT_STARTED = "the batch was interrupted before its first element was sent; _ollama is unchanged"


async def run_cell_batch(
    magics: Any, line: str, cell: str, view: Any = None, control: StopControl | None = None
) -> OllamaBatch:
    """A `%%ollama --each NAME` cell: `view`/`control` given on the synchronous path,
    else the widget view in the running (async) cell."""
    options = parse_line(magics.ollama_cell, line)
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    if options.chat or options.background:
        flag = "--chat" if options.chat else "--background"
        raise UsageError(f"%%ollama: --each cannot be combined with {flag}")
    if options.variables is False:  # every element would be sent the same literal prompt
        raise UsageError(
            "%%ollama: --each cannot be combined with --no-vars: each element's prompt is"
            " made by filling {item} and {index}; nothing was sent"
        )
    if options.each not in namespace:
        raise UsageError(f"%%ollama: --each {options.each}: no variable {options.each!r}"
                         " in the notebook")  # fmt: skip
    try:
        job = await prepare_batch(
            to_ask(options, cell.strip("\n"), namespace),
            namespace[options.each],
            options.parallel or 1,
            configured=magics.configured(),
            namespace=namespace,
            no_model_hint="name one (`%%ollama MODEL`), or set %config OllamaMagics.model"
            " / $OLLAMA_MODEL",
        )
    except ValueError as exc:
        raise UsageError(f"%%ollama: {exc}") from None
    except (asyncio.CancelledError, KeyboardInterrupt):  # the first element's check waited
        raise RequestInterrupted(NOT_STARTED) from None

    ticket = magics.ticket()

    def store(batch: OllamaBatch) -> None:
        magics.results.extend(batch.request_figures())
        magics.set_latest(batch, ticket)
        if magics.shell is not None and options.out:
            magics.shell.user_ns[options.out] = batch

    try:
        if view is not None:
            return await run_batch(job, view, control or StopControl(), store)
        control = StopControl()
        async with clicks_reach_running_cell() as stop_hint:
            live = live_batch_view(current_kernel(), control, stop_hint)
            return await run_batch(job, live, control, store)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted(INTERRUPTED_CELL) from None


def run_cell_batch_in_thread(magics: Any, line: str, cell: str, sync_view: Any) -> None:
    """The synchronous path (terminal IPython, `%autoawait off`): a worker thread's loop."""
    control = StopControl()
    view = sync_view(WidgetBatchView, TextBatchView, control)
    try:
        run_in_thread(lambda queued: run_cell_batch(magics, line, cell, queued, control), view)
    except RequestInterrupted as exc:
        if exc.args:  # worded by the batch itself
            raise
        raise RequestInterrupted(INTERRUPTED_CELL) from None
