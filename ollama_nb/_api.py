"""The Python API: `generate`, `agenerate`, `map`, `amap` and `embed`, for functions, loops
and scripts.

`generate` and `agenerate` build their request with `_request.build` and run it with
`_request.run`, as the magic does: the same settings, timeouts, retries, errors and
record. In a notebook (display=True) each call shows its own live view and then its
record in the calling cell; elsewhere nothing is shown. `generate` runs on a worker
thread's loop (`_sync`): the kernel's loop is busy running the calling cell, and
nest_asyncio would lose shell messages; Interrupt closes the response. `map` and `amap`
check their input and build the first element's request the same way, then run the batch
with `_batch` (one progress view for the whole batch, one `OllamaBatch` at the end).
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._batch import prepare_batch, run_batch
from ._batch_result import OllamaBatch
from ._batch_view import NullBatchView, live_batch_view
from ._client import OllamaClient
from ._config import check_retries, check_seconds, parse_host
from ._exceptions import OllamaResponseError, RequestInterrupted
from ._kernel import CellOutput, clicks_reach_running_cell, current_kernel
from ._request import (
    Ask,
    InvalidRequest,
    build,
    configured_in_shell,
    make_client,
    resolve_settings,
    run,
)
from ._result import OllamaResult
from ._stream import StopControl, Transcript
from ._sync import run_in_thread

EMBED_BATCH = 64  # texts per /api/embed request
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
INTERRUPTED = "the request was interrupted; the response was closed"
HINT_SYNC = "Stop cannot reach a synchronous cell: use Interrupt (■), or await agenerate(...)"
BATCH_INTERRUPTED = "the batch was interrupted; its responses are closed"
BATCH_HINT_SYNC = "Stop cannot reach a synchronous cell: use Interrupt (■), or await amap(...)"


def generate(
    prompt: str,
    model: str | None = None,
    *,
    system: str | None = None,
    images: Sequence[Any] | None = None,
    think: bool | str | None = None,
    format: str | dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    keep_alive: str | float | None = None,
    host: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    stop_on: str | re.Pattern[str] | None = None,
    display: bool = True,
) -> OllamaResult:
    """Ask `model` to answer `prompt`; the result as `%%ollama` would store it in `_ollama`.

    A keyword left None takes the magic's default (`%config OllamaMagics.*` where the
    extension is loaded, else $OLLAMA_HOST / $OLLAMA_MODEL, else the built-in default).
    Errors raise as in the magic. Called from a synchronous cell, Stop cannot reach it:
    Interrupt always works and closes the response (or use `await agenerate(...)`).
    """
    ask = _ask(**locals())
    kernel = _kernel(display)
    control = StopControl()
    view = _live_view(kernel, control, HINT_SYNC, prompt) if kernel is not None else NullView()

    async def work(queued: Any) -> OllamaResult:
        prepared = await build(ask, configured=configured_in_shell())
        return await run(prepared, queued, control, _keep_for_stats, INTERRUPTED)

    try:
        return run_in_thread(work, view)
    except RequestInterrupted:
        raise RequestInterrupted(INTERRUPTED) from None


async def agenerate(
    prompt: str,
    model: str | None = None,
    *,
    system: str | None = None,
    images: Sequence[Any] | None = None,
    think: bool | str | None = None,
    format: str | dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    keep_alive: str | float | None = None,
    host: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    stop_on: str | re.Pattern[str] | None = None,
    display: bool = True,
) -> OllamaResult:
    """`generate` as a coroutine: `await ollama_nb.agenerate(...)` in an async cell has a
    working Stop button, as `%%ollama` cells do."""
    ask = _ask(**locals())
    kernel = _kernel(display)
    control = StopControl()
    prepared = await build(ask, configured=configured_in_shell())
    if kernel is None:
        return await run(prepared, NullView(), control, _keep_for_stats, INTERRUPTED)
    async with clicks_reach_running_cell() as stop_hint:
        view = _live_view(kernel, control, stop_hint, prompt)
        return await run(prepared, view, control, _keep_for_stats, INTERRUPTED)


def map(
    prompt: str,
    items: Any,
    model: str | None = None,
    *,
    parallel: int = 1,
    system: str | None = None,
    images: Sequence[Any] | None = None,
    think: bool | str | None = None,
    format: str | dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    keep_alive: str | float | None = None,
    host: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    stop_on: str | re.Pattern[str] | None = None,
    display: bool = True,
) -> OllamaBatch:
    """Run `prompt` once per element of `items`, at most `parallel` requests at once.

    `{item}` in the prompt is the element (a DataFrame row: `{item.column}`,
    `{item[column]}`), `{index}` its position (a Series/DataFrame index label). Returns an
    `OllamaBatch` in input order; one element's failure is recorded there, not raised.
    Other keywords as `generate`. From a synchronous cell, Stop cannot reach the batch:
    Interrupt closes every response (or use `await amap(...)`).
    """
    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display)  # fmt: skip
    control = StopControl()
    view = live_batch_view(_kernel(display), control, BATCH_HINT_SYNC)

    async def work(queued: Any) -> OllamaBatch:
        job = await prepare_batch(
            ask, items, parallel, configured=configured_in_shell(), namespace={}
        )
        return await run_batch(job, queued, control, _keep_batch_for_stats)

    try:
        return run_in_thread(work, view)
    except RequestInterrupted:
        raise RequestInterrupted(BATCH_INTERRUPTED) from None


async def amap(
    prompt: str,
    items: Any,
    model: str | None = None,
    *,
    parallel: int = 1,
    system: str | None = None,
    images: Sequence[Any] | None = None,
    think: bool | str | None = None,
    format: str | dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    keep_alive: str | float | None = None,
    host: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    stop_on: str | re.Pattern[str] | None = None,
    display: bool = True,
) -> OllamaBatch:
    """`map` as a coroutine: `await ollama_nb.amap(...)` in an async cell has a working
    Stop button, as `%%ollama --each` cells do."""
    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display)  # fmt: skip
    job = await prepare_batch(ask, items, parallel, configured=configured_in_shell(), namespace={})
    control = StopControl()
    kernel = _kernel(display)
    try:
        if kernel is None:
            return await run_batch(job, NullBatchView(), control, _keep_batch_for_stats)
        async with clicks_reach_running_cell() as stop_hint:
            view = live_batch_view(kernel, control, stop_hint)
            return await run_batch(job, view, control, _keep_batch_for_stats)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted(BATCH_INTERRUPTED) from None


def embed(
    texts: str | Sequence[str],
    model: str | None = None,
    *,
    host: str | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    batch_size: int = EMBED_BATCH,
    display: bool = True,
) -> list[float] | list[list[float]]:
    """Embedding vectors from /api/embed: one vector (a list of floats) for a str, a list
    of vectors for a list of str. Long lists go in batches of `batch_size`, with a
    progress bar in a notebook. Same timeouts and retries as generate."""
    single = isinstance(texts, str)
    inputs = [texts] if single else _texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequest(f"batch_size must be a whole number >= 1, not {batch_size!r}")
    given = _settings_given(host, model, connect_timeout, read_timeout, timeout, retries)
    batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
    kernel = _kernel(display) if len(batches) > 1 else None
    progress: Any = _embed_progress(len(inputs)) if kernel is not None else NullView()

    async def work(queued: Any) -> list[list[float]]:
        settings = resolve_settings(given, configured_in_shell(), given_source="keyword")
        client = make_client(settings)
        name = settings["model"].value or await _no_model(client)
        vectors: list[list[float]] = []
        queued.start(len(inputs))
        try:
            for batch in batches:
                vectors.extend(await _embed_batch(client, name, batch))
                queued.update(len(vectors))
        finally:
            queued.finish(len(vectors))
        return vectors

    try:
        vectors = run_in_thread(work, progress)
    except RequestInterrupted:
        raise RequestInterrupted(INTERRUPTED) from None
    return vectors[0] if single else vectors


async def _embed_batch(client: OllamaClient, model: str, batch: list[str]) -> list[list[float]]:
    try:
        answer = await client.call("POST", "/api/embed", {"model": model, "input": batch})
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted(INTERRUPTED) from None
    vectors = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(vectors, list) or len(vectors) != len(batch):
        raise OllamaResponseError(
            f"{client.host}/api/embed answered without one embedding per text ({len(batch)} sent)",
            -1,
        )
    try:
        return [[float(x) for x in vector] for vector in vectors]
    except (TypeError, ValueError):
        raise OllamaResponseError(
            f"{client.host}/api/embed answered with vectors that are not numbers", -1
        ) from None


async def _no_model(client: OllamaClient) -> str:
    from ._request import _no_model as no_model

    return await no_model(
        client, "pass model=..., or set %config OllamaMagics.model / $OLLAMA_MODEL"
    )


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Sequence):
        raise InvalidRequest(f"embed takes a str or a list of str, not {type(texts).__name__}")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidRequest(f"embed takes a list of str; it holds a {type(bad).__name__}")
    return list(texts)


def _settings_given(
    host: str | None,
    model: str | None,
    connect_timeout: float | None,
    read_timeout: float | None,
    timeout: float | None,
    retries: int | None,
) -> dict[str, Any]:
    """The keywords given, checked as the magic checks its options."""
    for name, value in (("host", host), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a str, not {type(value).__name__}")
    try:
        return {
            "host": parse_host(host) if host is not None else None,
            "model": model,
            "connect_timeout": check_seconds("connect_timeout", connect_timeout, allow_none=True),
            "read_timeout": check_seconds("read_timeout", read_timeout, allow_none=True),
            "timeout": check_seconds("timeout", timeout, allow_none=True),
            "retries": check_retries(retries) if retries is not None else None,
        }
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None


def _ask(
    prompt: str,
    model: str | None,
    system: str | None,
    images: Sequence[Any] | None,
    think: bool | str | None,
    format: str | dict[str, Any] | None,
    options: Mapping[str, Any] | None,
    keep_alive: str | float | None,
    host: str | None,
    connect_timeout: float | None,
    read_timeout: float | None,
    timeout: float | None,
    retries: int | None,
    stop_on: str | re.Pattern[str] | None,
    display: bool,
) -> Ask:
    if not isinstance(prompt, str):
        raise InvalidRequest(f"prompt must be a str, not {type(prompt).__name__}")
    if format is not None and format != "json" and not isinstance(format, dict):
        raise InvalidRequest(f'format takes "json" or a JSON-schema dict, not {format!r}')
    if options is not None and not isinstance(options, Mapping):
        raise InvalidRequest(f"options takes a dict, not {type(options).__name__}")
    if images is not None and (isinstance(images, (str, bytes)) or not _is_list(images)):
        images = [images]  # one image given on its own
    try:
        pattern = re.compile(stop_on) if isinstance(stop_on, str) else stop_on
    except re.error as exc:
        raise InvalidRequest(
            f"stop_on {stop_on!r} is not a valid regular expression: {exc}"
        ) from None
    given = _settings_given(host, model, connect_timeout, read_timeout, timeout, retries)
    return Ask(
        prompt=prompt,
        system=system,
        keep_alive=keep_alive,
        think=think,
        format=format,
        options=dict(options or {}),
        images=list(images or []),
        stop_on=pattern,
        **given,
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _kernel(display: bool) -> Any | None:
    """The running kernel, when this call should show itself; never imports IPython.

    Only from the kernel's own thread: outputs sent from another thread may land in a
    later cell (see KERNEL_FACTS), so a call from a worker thread shows nothing."""
    if not display or "IPython" not in sys.modules:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return current_kernel()


def _live_view(kernel: Any, control: StopControl, stop_hint: str | None, prompt: str) -> Any:
    from ._view import WidgetView

    # The prompt heads the view and the record: a loop of calls tells its records apart.
    return WidgetView(CellOutput(kernel), control, stop_hint, prompt)


def _keep_batch_for_stats(batch: OllamaBatch) -> None:
    requests = _session_requests()
    if requests is not None:
        requests.extend(batch.request_figures())


def _keep_for_stats(result: OllamaResult) -> None:
    requests = _session_requests()
    if requests is not None:
        requests.append(result)


def _session_requests() -> Any:
    """Where `%ollama stats` counts requests, if the extension is loaded; results are
    never stored in `_ollama` from here."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("OllamaMagics") if shell is not None else None
    return magics.results if magics is not None else None


class NullView:
    """Shows nothing: display=False, a script, terminal IPython."""

    def start(self, _model: Any) -> None:
        pass

    def update(self, _transcript: Transcript | Any) -> None:
        pass

    def finish(self, _result: Any) -> None:
        pass


def _embed_progress(total: int) -> Any:
    return EmbedProgress()


class EmbedProgress:
    """A notebook's progress bar for a long `embed`, replaced by one line when it ends."""

    def start(self, total: int) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._started = time.monotonic()
        self._total = total
        self._bar = widgets.IntProgress(value=0, min=0, max=total, description="embed")
        self._label = widgets.Label(value=f"0 / {total} texts")
        self._root = widgets.HBox([self._bar, self._label])
        # Only the widget's mime type (nbval skips it); replaced by a line at the end.
        bundle = {WIDGET_MIME: {"version_major": 2, "version_minor": 0,
                                "model_id": self._root.model_id}}  # fmt: skip
        self._handle = display(bundle, raw=True, display_id=True)

    def update(self, done: int) -> None:
        self._bar.value = done
        self._label.value = f"{done} / {self._total} texts"

    def finish(self, done: int) -> None:
        seconds = time.monotonic() - self._started
        of = "" if done == self._total else f" of {self._total}"
        line = f"embedded {done}{of} texts in {seconds:.1f} s"
        self._handle.update({"text/plain": line}, raw=True)
        for widget in (self._bar, self._label, self._root):
            widget.close()
