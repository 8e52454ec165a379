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
How a call ends when asyncio cancels it or Interrupt stops it is `_cancel`'s.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._batch import BatchJob, prepare_batch, run_batch
from ._batch_result import OllamaBatch
from ._batch_view import NullBatchView, live_batch_view
from ._cancel import Call
from ._checks import compile_pattern
from ._client import OllamaClient
from ._config import check_retries, check_seconds, parse_host
from ._exceptions import InvalidRequest, OllamaResponseError, RequestInterrupted
from ._kernel import (
    HINT_KERNEL,
    CellOutput,
    click_delivery,
    clicks_reach_running_cell,
    current_kernel,
)
from ._next_cell import next_input
from ._prompt import PromptVariableError, fields, fill_prompt
from ._request import (
    Ask,
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
CANCELLED = "the request was cancelled; the response was closed"
HINT_SYNC = "Stop cannot reach a synchronous cell: use Interrupt (■), or await agenerate(...)"
NO_CONFIRM = "confirm=True needs clicks to reach the running cell"
BATCH_INTERRUPTED = "the batch was interrupted; its responses are closed"
BATCH_CANCELLED = "the batch was cancelled; its responses are closed"
BATCH_FIELDS = frozenset({"item", "index"})  # what map fills from each element
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
    context: Mapping[str, Any] | None = None,
    cache: str | os.PathLike[str] | bool | None = None,
    variables: Mapping[str, Any] | None = None,
    code: bool = False,
    api: str | None = None,
    tools: Sequence[Callable[..., Any]] | None = None,
    max_steps: int = 8,
    confirm: bool = False,
) -> OllamaResult:
    """Ask `model` to answer `prompt`; the result as `%%ollama` would store it in `_ollama`.

    A keyword left None takes the magic's default (`%config OllamaMagics.*` where the
    extension is loaded, else $OLLAMA_HOST / $OLLAMA_MODEL, else the built-in default).
    Errors raise as in the magic. Called from a synchronous cell, Stop cannot reach it:
    Interrupt always works and closes the response (or use `await agenerate(...)`); the
    `RequestInterrupted` it raises holds the result so far in `.partial`.

    The prompt is sent as written, unless `variables` (a mapping) is given: then its
    `{name}` fields are filled from it (`{{name}}` sends `{name}`).

    `cache`: None follows `OllamaMagics.cache` / $OLLAMA_NB_CACHE, False bypasses the
    cache file, a path uses that file (see `%ollama cache`).
    code=True asks for Python code: `.code` holds it and, in a notebook cell (display=True),
    it goes into a new cell below, as with `%%ollama --code`.

    `tools`: functions the model may call (see README, "Letting the model call your
    functions"); at most `max_steps` rounds of calls (default 8). `confirm=True` needs
    clicks to reach the cell: use `await agenerate(...)`.
    """
    if confirm:
        raise InvalidRequest(f"{NO_CONFIRM}: a synchronous call; use await agenerate(...)")
    ask = _ask(**locals())
    kernel = _kernel(display)
    control = StopControl()
    view = _live_view(kernel, control, HINT_SYNC, prompt) if kernel is not None else NullView()
    call = Call(INTERRUPTED, CANCELLED)
    target = next_input(display) if code else None

    async def work(queued: Any) -> OllamaResult:
        prepared = await build(ask, configured=configured_in_shell())
        keep = _keeping(call, _keep_for_stats)
        return await run(prepared, queued, control, keep, INTERRUPTED, target)

    try:
        return run_in_thread(work, view)
    except RequestInterrupted:
        raise call.interrupted() from None


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
    context: Mapping[str, Any] | None = None,
    cache: str | os.PathLike[str] | bool | None = None,
    variables: Mapping[str, Any] | None = None,
    code: bool = False,
    api: str | None = None,
    tools: Sequence[Callable[..., Any]] | None = None,
    max_steps: int = 8,
    confirm: bool = False,
) -> OllamaResult:
    """`generate` as a coroutine: `await ollama_nb.agenerate(...)` in an async cell has a
    working Stop button, as `%%ollama` cells do.

    Cancelling it (`asyncio.wait_for`, `asyncio.timeout`, `task.cancel()`) closes the
    response and raises `CancelledError`; Interrupt raises `RequestInterrupted` (with
    `.partial`) in the cell that awaits it (see `_cancel`)."""
    ask = _ask(**locals())
    kernel = _kernel(display)
    control = StopControl()
    target = next_input(display) if code else None
    if confirm and (kernel is None or click_delivery() == "none"):
        raise InvalidRequest(f"{NO_CONFIRM}: no notebook view, or {HINT_KERNEL}")
    with Call(INTERRUPTED, CANCELLED) as call:
        keep = _keeping(call, _keep_for_stats)
        prepared = await build(ask, configured=configured_in_shell())
        if kernel is None:
            return await run(prepared, NullView(), control, keep, INTERRUPTED, target)
        async with clicks_reach_running_cell() as stop_hint:
            view = _live_view(kernel, control, stop_hint, prompt)
            if confirm:
                prepared.request.confirm = view.confirm
            return await run(prepared, view, control, keep, INTERRUPTED, target)


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
    cache: str | os.PathLike[str] | bool | None = None,
    variables: Mapping[str, Any] | None = None,
    api: str | None = None,
) -> OllamaBatch:
    """Run `prompt` once per element of `items`, at most `parallel` requests at once.

    `{item}` in the prompt is the element (a DataFrame row: `{item.column}`,
    `{item[column]}`), `{index}` its position (a Series/DataFrame index label), and any
    other `{name}` a key of `variables` (a mapping); `{{name}}` sends `{name}`. Returns an
    `OllamaBatch` in input order; one element's failure is recorded there, not raised.
    Other keywords as `generate`. From a synchronous cell, Stop cannot reach the batch:
    Interrupt closes every response (or use `await amap(...)`); the `RequestInterrupted`
    it raises holds the batch so far in `.partial`.
    """
    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display,
               cache=cache, api=api)  # fmt: skip
    namespace = _batch_variables(prompt, variables)
    control = StopControl()
    view = live_batch_view(_kernel(display), control, BATCH_HINT_SYNC)
    call = Call(BATCH_INTERRUPTED, BATCH_CANCELLED)

    async def work(queued: Any) -> OllamaBatch:
        job = await _prepare_batch(ask, items, parallel, namespace)
        return await run_batch(job, queued, control, _keeping(call, _keep_batch_for_stats))

    try:
        return run_in_thread(work, view)
    except RequestInterrupted:
        raise call.interrupted() from None


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
    cache: str | os.PathLike[str] | bool | None = None,
    variables: Mapping[str, Any] | None = None,
    api: str | None = None,
) -> OllamaBatch:
    """`map` as a coroutine: `await ollama_nb.amap(...)` in an async cell has a working
    Stop button, as `%%ollama --each` cells do. Cancelling and Interrupt as `agenerate`
    (`.partial` is the batch so far)."""
    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display,
               cache=cache, api=api)  # fmt: skip
    namespace = _batch_variables(prompt, variables)
    control = StopControl()
    kernel = _kernel(display)
    with Call(BATCH_INTERRUPTED, BATCH_CANCELLED) as call:
        keep = _keeping(call, _keep_batch_for_stats)
        job = await _prepare_batch(ask, items, parallel, namespace)
        if kernel is None:
            return await run_batch(job, NullBatchView(), control, keep)
        async with clicks_reach_running_cell() as stop_hint:
            view = live_batch_view(kernel, control, stop_hint)
            return await run_batch(job, view, control, keep)


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
    api: str | None = None,
) -> list[float] | list[list[float]]:
    """Embedding vectors from /api/embed: one vector (a list of floats) for a str, a list
    of vectors for a list of str. Long lists go in batches of `batch_size`, with a
    progress bar in a notebook. Same timeouts and retries as generate."""
    single = isinstance(texts, str)
    inputs = [texts] if single else _texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequest(f"batch_size must be a whole number >= 1, not {batch_size!r}")
    given = _settings_given(host, model, connect_timeout, read_timeout, timeout, retries)
    given["api"] = api
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
            f"{client.url_of('/api/embed')} answered without one embedding per text"
            f" ({len(batch)} sent)",
            -1,
        )
    try:
        return [[float(x) for x in vector] for vector in vectors]
    except (TypeError, ValueError):
        raise OllamaResponseError(
            f"{client.url_of('/api/embed')} answered with vectors that are not numbers", -1
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
    context: Mapping[str, Any] | None = None,
    cache: str | os.PathLike[str] | bool | None = None,
    variables: Mapping[str, Any] | None = None,
    code: bool = False,
    api: str | None = None,
    tools: Sequence[Callable[..., Any]] | None = None,
    max_steps: int | None = None,
    confirm: bool = False,
) -> Ask:
    if not isinstance(prompt, str):
        raise InvalidRequest(f"prompt must be a str, not {type(prompt).__name__}")
    if variables is not None:  # generate / agenerate: fields only with variables=
        prompt = _filled(prompt, _checked_variables(variables))
    if format is not None and format != "json" and not isinstance(format, dict):
        raise InvalidRequest(f'format takes "json" or a JSON-schema dict, not {format!r}')
    if options is not None and not isinstance(options, Mapping):
        raise InvalidRequest(f"options takes a dict, not {type(options).__name__}")
    if images is not None and (isinstance(images, (str, bytes)) or not _is_list(images)):
        images = [images]  # one image given on its own
    try:
        pattern = compile_pattern(stop_on, "stop_on") if isinstance(stop_on, str) else stop_on
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if context is not None and not isinstance(context, Mapping):
        raise InvalidRequest(
            f"context takes a mapping of names to values, not {type(context).__name__}"
        )
    if not (cache is None or cache is False or isinstance(cache, (str, os.PathLike))):
        raise InvalidRequest(f"cache takes a file path, False (bypass) or None, not {cache!r}")
    if not isinstance(code, bool):
        raise InvalidRequest(f"code takes True or False, not {code!r}")
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
        context=dict(context or {}),
        code=code,
        api=api,
        **given,
        cache=cache,
        tools=_tool_list(tools),
        max_steps=max_steps,
    )


def _checked_variables(variables: Any) -> dict[str, Any]:
    if not isinstance(variables, Mapping):
        raise InvalidRequest(
            f"variables takes a mapping of field names to values, not {type(variables).__name__}"
        )
    bad = next((key for key in variables if not isinstance(key, str)), None)
    if bad is not None:
        raise InvalidRequest(f"variables takes str keys (the fields' names), not {bad!r}")
    return dict(variables)


def _unknown_field(prompt: str, known: Any, fills: Callable[[str], str]) -> None:
    """An InvalidRequest naming the first field of `prompt` not in `known`, and the ways
    out that the API has (not the magic's --no-vars, nor the notebook's variables)."""
    name = next((name for name in fields(prompt) if name not in known), None)
    if name is not None:
        raise InvalidRequest(
            f"the prompt uses {{{name}}}, but {fills(name)}: pass variables={{{name!r}: ...}},"
            f" or write {{{{{name}}}}} to send it as written; nothing was sent"
        )


def _tool_list(tools: Any) -> list[Callable[..., Any]]:
    """`tools=f` or `tools=[f, g]` (None: none)."""
    if tools is None:
        return []
    return [tools] if callable(tools) else list(tools)


def _filled(prompt: str, variables: dict[str, Any]) -> str:
    _unknown_field(prompt, variables, lambda name: f"{name!r} is not in variables")
    try:
        return fill_prompt(prompt, variables)
    except PromptVariableError as exc:
        raise InvalidRequest(f"{exc}; nothing was sent") from None


def _batch_variables(prompt: str, variables: Any) -> dict[str, Any]:
    """What map's fields are filled from besides `item` and `index`: `variables`."""
    namespace = {} if variables is None else _checked_variables(variables)
    taken = sorted(BATCH_FIELDS & namespace.keys())
    if taken:
        raise InvalidRequest(
            f"variables cannot hold {', '.join(taken)}: map fills {{item}} and {{index}}"
            " with each element and its position"
        )
    if isinstance(prompt, str):
        _unknown_field(
            prompt, BATCH_FIELDS | namespace.keys(),
            lambda _name: "map fills only {item}, {index} and the keys of variables",
        )  # fmt: skip
    return namespace


async def _prepare_batch(ask: Ask, items: Any, parallel: Any, namespace: Any) -> BatchJob:
    """`prepare_batch` for map/amap: the fields always filled (whatever %config
    OllamaMagics.variables says)."""
    ask.variables = True
    return await prepare_batch(
        ask, items, parallel, configured=configured_in_shell(), namespace=namespace
    )


def _keeping(call: Call, keep: Callable[[Any], None]) -> Callable[[Any], None]:
    """`keep` (for %ollama stats), and the call's partial result for an interrupt."""

    def both(result: Any) -> None:
        call.keep(result)
        keep(result)

    return both


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
    """A notebook's progress bar for a long `embed`, replaced by one line when it ends.
    Its widgets' messages are unrecorded (`CellOutput.comms_unrecorded`): a headless run
    saves the line, and no widget state."""

    def start(self, total: int) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._started = time.monotonic()
        self._total = total
        self._out = CellOutput(current_kernel())
        with self._out.comms_unrecorded():
            self._bar = widgets.IntProgress(value=0, min=0, max=total, description="embed")
            self._label = widgets.Label(value=f"0 / {total} texts")
            self._root = widgets.HBox([self._bar, self._label])
        # Only the widget's mime type (nbval skips it); replaced by a line at the end.
        bundle = {WIDGET_MIME: {"version_major": 2, "version_minor": 0,
                                "model_id": self._root.model_id}}  # fmt: skip
        self._handle = display(bundle, raw=True, display_id=True)

    def update(self, done: int) -> None:
        with self._out.comms_unrecorded():
            self._bar.value = done
            self._label.value = f"{done} / {self._total} texts"

    def finish(self, done: int) -> None:
        seconds = time.monotonic() - self._started
        of = "" if done == self._total else f" of {self._total}"
        line = f"embedded {done}{of} texts in {seconds:.1f} s"
        self._handle.update({"text/plain": line}, raw=True)
        with self._out.comms_unrecorded():
            for widget in (self._bar, self._label, self._root):
                widget.close()
