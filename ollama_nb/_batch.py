"""Batches: one prompt over many elements, at most N requests in flight, nothing lost.

`run_batch` takes the request of a batch's first element (built like any other request)
and sends one copy per element, with that element's prompt. Each request has the cell's
connect timeout and connection retries (in the client), its read and total timeouts
(enforced here, see below), and:

- a 503 ("server busy": the server's queue is full, nothing was generated) is tried
  again with backoff;
- a connection that failed before any byte arrived (refused, reset, or a gateway's
  502/504 in front of a server that went away) is tried once more;
- any other failure is recorded for that element, and the batch goes on.

Queueing. Ollama serves `OLLAMA_NUM_PARALLEL` requests per model and queues the rest,
sending a queued request nothing at all until it is scheduled. A plain read timeout
cannot tell "queued behind my own batch" from "stalled", so here the silence before a
request's first byte is counted only while that request can be running: the batch
learns how many of its requests the server streams at once (`capacity`, the most seen
streaming together), and while that many are streaming, the requests still waiting for
a first byte are taken as queued and their clock does not run. When fewer stream (one
ended, so a slot is free), the oldest waiting requests, one per free slot, are taken as
scheduled and get the full read timeout for model load and prompt evaluation, as a
single request does. Once a request streams, the read timeout is the longest silence
between chunks, as always. Both are checked `WATCH_HZ` times a second; a timeout is
confirmed at the next check, and time when this loop itself could not run (a busy kernel)
does not count as silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import httpx

from ._batch_view import BatchStats, record_html, record_text, refresh_interval, summary_line
from ._client import OllamaClient, map_http_error
from ._config import Timeouts
from ._exceptions import OllamaConnectionError, OllamaError, OllamaResponseError, OllamaTimeoutError
from ._result import OllamaResult
from ._stream import SETTLE_SECONDS, Request, StopControl, Transcript, build_result, chunk_text

MAX_PARALLEL = 64
WATCH_HZ = 10
LOOP_STALL = 0.2  # the watch ran this much later than asked: the time is not the server's
BUSY_RETRIES = 10  # 503 "server busy": tries again, 0.5 s, 1 s, ... at most BUSY_MAX_WAIT apart
BUSY_FIRST_WAIT = 0.5
BUSY_MAX_WAIT = 8.0
RECONNECTS = 1  # a connection lost before any byte arrived: sent once more
GATEWAY_LOST = (502, 504)  # a balancer's answer when the server behind it went away
FAILED = ("error", "timeout")
DRAIN_SECONDS = 1.0


class BatchInputError(TypeError):
    """The items cannot be a batch (a str, a non-iterable...)."""


# -- the elements -------------------------------------------------------------------------


class Row:
    """A DataFrame row as the prompt sees it: `{item.column}` and `{item[column]}`."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[Any, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getitem__(self, key: Any) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}") from None

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def __str__(self) -> str:
        return ", ".join(f"{key}: {value}" for key, value in self._values.items())

    def __repr__(self) -> str:
        return f"Row({self._values!r})"


@dataclass
class Elements:
    """What a batch runs over: how many, and (index label, element) pairs on demand."""

    total: int
    pairs: Callable[[], Iterator[tuple[Any, Any]]]
    index: Any = None  # the pandas Index of a Series / DataFrame input, else None


def _pandas_kind(items: Any) -> str | None:
    # pandas is imported only when the input comes from it.
    if not type(items).__module__.startswith("pandas"):
        return None
    import pandas as pd

    if isinstance(items, pd.DataFrame):
        return "frame"
    if isinstance(items, pd.Series):
        return "series"
    return None


def elements(items: Any) -> Elements:
    """A list, tuple, range, pandas Series (values) or DataFrame (rows), or any iterable."""
    if isinstance(items, (str, bytes, bytearray)):
        raise BatchInputError(
            f"a {type(items).__name__} is one prompt, not a batch: put the elements in a list"
        )
    kind = _pandas_kind(items)
    if kind == "series":
        return Elements(len(items), lambda: iter(items.items()), items.index)
    if kind == "frame":
        columns = list(items.columns)

        def rows() -> Iterator[tuple[Any, Any]]:
            for label, *values in items.itertuples(index=True, name=None):
                yield label, Row(dict(zip(columns, values, strict=True)))

        return Elements(len(items), rows, items.index)
    if not isinstance(items, Iterable):
        raise BatchInputError(
            f"cannot run a batch over a {type(items).__name__}: it is not iterable"
            " (use a list, tuple, range, pandas Series or DataFrame)"
        )
    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        items = list(items)  # a generator: its length is known only once it is read
        total = len(items)
    return Elements(total, lambda: enumerate(items))


def check_parallel(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise ValueError(f"parallel must be a whole number from 1 to {MAX_PARALLEL}, not {value!r}")
    return value


# -- the result ---------------------------------------------------------------------------


class OllamaBatch(Sequence[OllamaResult]):
    """The results of a batch, one `OllamaResult` per element, in input order.

    A request that never started (Stop, interrupt) has `done_reason == "skipped"`.
    """

    def __init__(
        self,
        results: list[OllamaResult],
        *,
        model: str,
        elapsed: float,
        index: Any = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self._results = results
        self.model = model
        self.elapsed = elapsed
        self._index = index
        self._settings = settings or {}

    @overload
    def __getitem__(self, position: int) -> OllamaResult: ...

    @overload
    def __getitem__(self, position: slice) -> list[OllamaResult]: ...

    def __getitem__(self, position: int | slice) -> OllamaResult | list[OllamaResult]:
        return self._results[position]

    def __len__(self) -> int:
        return len(self._results)

    @property
    def texts(self) -> Any:
        """The answers: a list, or a pandas Series with the input's index."""
        texts = [r.text for r in self._results]
        if self._index is None:
            return texts
        import pandas as pd

        return pd.Series(texts, index=self._index, name="text")

    @property
    def failed(self) -> list[int]:
        """Positions of the results that ended with an error or a timeout."""
        return [i for i, r in enumerate(self._results) if r.done_reason in FAILED]

    @property
    def json(self) -> list[Any]:
        """Each answer parsed as JSON (with --format / format=), None where it did not parse."""
        return [r.json for r in self._results]

    def counts(self) -> dict[str, int]:
        """How many ended each way (`stop`, `length`, `error`, `timeout`, `skipped`, …)."""
        return dict(Counter(r.done_reason or "?" for r in self._results).most_common())

    @property
    def eval_count(self) -> int:
        return sum(r.eval_count if r.eval_count is not None else r.chunks for r in self._results)

    @property
    def tokens_per_second(self) -> float | None:
        """Tokens generated by the whole batch per second of its wall time."""
        return self.eval_count / self.elapsed if self.elapsed > 0 else None

    def metadata(self) -> dict[str, Any]:
        """What the saved record carries under `ollama_nb` (nothing secret)."""
        from importlib.metadata import version

        return {
            "model": self.model,
            "done_reason": self.counts(),
            "counts": self.counts(),
            "items": len(self),
            "failed": len(self.failed),
            "eval_count": self.eval_count,
            "elapsed": round(self.elapsed, 3),
            "options": self._settings.get("options") or {},
            "think": self._settings.get("think"),
            "format": self._settings.get("format"),
            "parallel": self._settings.get("parallel"),
            "version": version("ollama-nb"),
        }

    def __repr__(self) -> str:
        return f"OllamaBatch({summary_line(self)!r})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": record_html(self), "text/plain": record_text(self)}


# -- running ------------------------------------------------------------------------------


@dataclass
class BatchJob:
    """Everything a batch needs; `fill(namespace)` makes one element's prompt."""

    base: Request  # the first element's request: the others are copies with their prompt
    elements: Elements
    fill: Callable[[Mapping[str, Any]], str]
    namespace: Mapping[str, Any] = field(default_factory=dict)
    parallel: int = 1
    read_timeout: float = 120.0
    settings: dict[str, Any] = field(default_factory=dict)  # for the record's metadata


class _Borrowed:
    """The batch's one httpx client, lent to each request without closing it after."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def __aenter__(self) -> httpx.AsyncClient:
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        return None


def pooled_client(client: OllamaClient) -> tuple[OllamaClient, httpx.AsyncClient]:
    """A copy of `client` whose requests share one connection pool, with no httpx read
    timeout: the batch enforces read timeouts itself (queue-aware)."""
    maker = copy.copy(client)
    maker.timeouts = Timeouts(client.timeouts.connect, None, client.timeouts.total)  # type: ignore[arg-type]
    http = maker._http()
    shared = copy.copy(client)
    shared._http = lambda: _Borrowed(http)  # type: ignore[method-assign,assignment,return-value]
    return shared, http


@dataclass(eq=False)
class Flight:
    """One element's request while it runs."""

    position: int
    request: Request
    started: float = field(default_factory=time.monotonic)
    transcript: Transcript = field(default_factory=Transcript)
    sent_at: float | None = None  # this attempt's start; None while backing off
    first_byte_at: float | None = None
    last_byte_at: float = 0.0
    clock_from: float | None = None  # when its first-byte silence began to count
    cancel_reason: str | None = None  # "stopped", "interrupted", "read", "total"
    suspect: str | None = None  # a timeout seen at the last check, to confirm at this one
    answered: bool = False  # the final chunk came; only the end of the body may follow


async def _drain(chunks: Any) -> None:
    """Read the end of the body after the final chunk, so that the connection goes back
    to the pool for the next element (a response closed early cannot be reused)."""
    with contextlib.suppress(StopAsyncIteration, asyncio.TimeoutError, OllamaError):
        await asyncio.wait_for(chunks.__anext__(), DRAIN_SECONDS)


def _lost_before_any_byte(error: OllamaError) -> bool:
    if isinstance(error, OllamaConnectionError):
        return True
    return isinstance(error, OllamaResponseError) and error.status_code in GATEWAY_LOST


def _busy(error: OllamaError) -> bool:
    return isinstance(error, OllamaResponseError) and error.status_code == 503


class Batch:
    """Runs a `BatchJob` to its end; see the module's docstring for the rules."""

    def __init__(self, job: BatchJob, view: Any, control: StopControl) -> None:
        self.job = job
        self.view = view
        self.control = control
        self.results: list[OllamaResult | None] = [None] * job.elements.total
        self.flights: dict[asyncio.Task[OllamaResult], Flight] = {}
        self.stats = BatchStats(model=job.base.model, total=job.elements.total)
        self.capacity = 1  # the most of this batch's requests seen streaming at once
        self.streaming = 0
        self.started = time.monotonic()
        self.client, self._http = pooled_client(job.base.client)

    # -- one element ----------------------------------------------------------------------

    def _request(self, prompt: str) -> Request:
        base = self.job.base
        payload = {**base.payload, "prompt": prompt}
        return dataclasses.replace(base, client=self.client, payload=payload, prompt=prompt)

    async def _attempt(self, flight: Flight) -> None:
        transcript = flight.transcript = Transcript()
        flight.sent_at, flight.first_byte_at, flight.clock_from = time.monotonic(), None, None
        flight.suspect = None
        request = flight.request
        stop_on, text_so_far = request.stop_on, ""
        counted = False  # counted in self.streaming
        try:
            async with contextlib.aclosing(
                request.client.stream(request.path, request.payload)
            ) as chunks:
                async for chunk in chunks:
                    now = time.monotonic()
                    if flight.first_byte_at is None:
                        flight.first_byte_at = now
                        self.streaming += 1
                        counted = True
                    else:
                        # Learnt from a second chunk, not a first: a first chunk can be
                        # read just before the final chunk of the request whose slot it
                        # took, which would count one slot twice.
                        self.capacity = max(self.capacity, self.streaming)
                    flight.last_byte_at = now
                    text, thinking = chunk_text(chunk, False)
                    transcript.add(text, thinking)
                    if text or thinking:
                        self.stats.tokens += 1
                    if chunk.get("done"):
                        chunk.pop("context", None)
                        transcript.final = chunk
                        self.streaming -= 1  # its slot on the server is free now
                        counted = False
                        flight.answered = True  # no timeout now: the answer is whole
                        await _drain(chunks)
                        return
                    if stop_on is not None and text:
                        text_so_far += text
                        if stop_on.search(text_so_far):
                            flight.cancel_reason = "stopped"
                            return
        finally:
            if counted:
                self.streaming -= 1
        raise OllamaResponseError("the stream ended without its final 'done' chunk")

    async def _element(self, flight: Flight) -> OllamaResult:
        busy = reconnects = 0
        try:
            while True:
                try:
                    await self._attempt(flight)
                    return build_result(
                        flight.request, flight.transcript, flight.cancel_reason, None
                    )
                except OllamaError as exc:
                    if flight.first_byte_at is None and _busy(exc) and busy < BUSY_RETRIES:
                        busy += 1
                        flight.sent_at = None  # not at the server while it waits
                        wait = min(BUSY_MAX_WAIT, BUSY_FIRST_WAIT * 2 ** (busy - 1))
                        await asyncio.sleep(wait * random.uniform(0.75, 1.25))
                        continue
                    if (
                        flight.first_byte_at is None
                        and _lost_before_any_byte(exc)
                        and reconnects < RECONNECTS
                    ):
                        reconnects += 1
                        continue
                    return build_result(flight.request, flight.transcript, None, exc)
        except asyncio.CancelledError:
            reason = flight.cancel_reason
            if reason is None:
                raise
            return self._cut_short(flight, reason)

    def _cut_short(self, flight: Flight, reason: str) -> OllamaResult:
        request, transcript = flight.request, flight.transcript
        if reason == "read":
            error: OllamaError = map_http_error(
                httpx.ReadTimeout(""), request.client.host, request.client.timeouts
            )
            return build_result(request, transcript, None, error)
        if reason == "total":
            error = OllamaTimeoutError(
                f"total timeout: the request ran for its whole {request.total_timeout:g} s"
                " (raise --timeout, or use --stop-on / num_predict to bound the answer)",
                "total",
            )
            return build_result(request, transcript, None, error)
        return build_result(request, transcript, reason, None)

    # -- the batch ------------------------------------------------------------------------

    def _start(self, position: int, label: Any, item: Any) -> asyncio.Task[OllamaResult] | None:
        namespace = _Scope({"item": item, "index": label}, self.job.namespace)
        try:
            prompt = self.job.fill(namespace)
        except Exception as exc:  # this element's prompt cannot be made: its own failure
            error = OllamaError(f"element {position}: cannot fill the prompt: {exc}")
            self._store(position, self._failed(error))
            return None
        flight = Flight(position, self._request(prompt))
        task = asyncio.ensure_future(self._element(flight))
        self.flights[task] = flight
        return task

    def _failed(self, error: OllamaError) -> OllamaResult:
        result = OllamaResult(model=self.job.base.model, done_reason="error", error=error)
        result.host = self.client.host
        return result

    def _store(self, position: int, result: OllamaResult) -> None:
        self.results[position] = result
        self.stats.done += 1
        if result.done_reason in FAILED:
            self.stats.failed += 1

    def _land(self, task: asyncio.Task[OllamaResult]) -> None:
        flight = self.flights.pop(task)
        if task.cancelled():  # cancelled before it began to run
            result = self._cut_short(flight, flight.cancel_reason or "interrupted")
        elif task.exception() is not None:  # a bug: recorded as an error, not as an answer
            result = build_result(flight.request, flight.transcript, None, task.exception())
        else:
            result = task.result()
        self._store(flight.position, _compact(result))

    async def _cancel_all(self, reason: str) -> None:
        """Close every response in flight at once; returns when they are closed."""
        tasks = list(self.flights)
        for task in tasks:
            self.flights[task].cancel_reason = reason
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SETTLE_SECONDS)
        for task in tasks:
            if task.done():
                self._land(task)

    def _watch(self, now: float) -> None:
        """Read and total timeouts of the requests in flight (see the module docstring)."""
        read = self.job.read_timeout
        free = self.capacity - self.streaming
        for task, flight in self.flights.items():
            if task.done() or flight.cancel_reason is not None or flight.answered:
                continue
            total = flight.request.total_timeout
            if total is not None and now - flight.started > total:
                reason: str | None = "total"
            elif flight.first_byte_at is not None:
                reason = "read" if now - flight.last_byte_at > read else None
            elif flight.sent_at is None:  # backing off after a 503
                reason = None
            elif free > 0:  # presumed scheduled: model load and prompt evaluation
                free -= 1
                if flight.clock_from is None:
                    flight.clock_from = now
                reason = "read" if now - flight.clock_from > read else None
            else:  # presumed queued behind requests that are streaming
                flight.clock_from = None
                reason = None
            # Confirmed on the next tick: bytes that came while this loop was busy are
            # read first, so a late loop never passes for a silent server.
            if reason is not None and flight.suspect == reason:
                flight.cancel_reason = reason
                task.cancel()
            flight.suspect = reason

    def _forgive(self, stall: float) -> None:
        """This loop did not run for `stall` seconds (a busy kernel or machine): that time
        does not count as the server's silence."""
        for flight in self.flights.values():
            flight.last_byte_at += stall
            if flight.clock_from is not None:
                flight.clock_from += stall

    def snapshot(self) -> BatchStats:
        self.stats.in_flight = len(self.flights)
        self.stats.elapsed = time.monotonic() - self.started
        return self.stats

    async def _tick(self) -> None:
        next_refresh = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(1 / WATCH_HZ)
            now = time.monotonic()
            stall = now - last - 1 / WATCH_HZ
            last = now
            if stall > LOOP_STALL:
                self._forgive(stall)
            self._watch(now)
            if now - self.started >= next_refresh:
                self.view.update(self.snapshot())
                next_refresh = now - self.started + refresh_interval(now - self.started)

    def _batch(self) -> OllamaBatch:
        model = self.job.base.model
        results: list[OllamaResult] = []
        for result in self.results:
            if result is None:
                result = OllamaResult(model=model, done_reason="skipped")
                result.host = self.client.host
            results.append(result)
        return OllamaBatch(
            results,
            model=model,
            elapsed=time.monotonic() - self.started,
            index=self.job.elements.index,
            settings=self.job.settings,
        )

    async def run(self, on_result: Callable[[OllamaBatch], None]) -> OllamaBatch:
        """Hand the batch to `on_result` on every path (also an interrupt, which is then
        re-raised), show its record, and return it."""
        self.view.start(self.snapshot())
        stop_wait = asyncio.ensure_future(self.control.bind().wait())
        ticker = asyncio.ensure_future(self._tick())
        source = self.job.elements.pairs()
        position = 0
        try:
            while True:
                while len(self.flights) < self.job.parallel and not self.control.requested:
                    pair = next(source, None)
                    if pair is None:
                        break
                    self._start(position, *pair)
                    position += 1
                if not self.flights or self.control.requested:
                    break
                done, _ = await asyncio.wait(
                    {*self.flights, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is not stop_wait:
                        self._land(task)
            await self._cancel_all("stopped")
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._cancel_all("interrupted")
            raise
        finally:
            for task in (stop_wait, ticker):
                task.cancel()
            await asyncio.gather(stop_wait, ticker, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.aclose(), SETTLE_SECONDS)
            batch = self._batch()
            self.view.update(self.snapshot())
            self.view.finish(batch)
            on_result(batch)
        return batch


# Per element, the final chunk's strings that every result repeats: dropped, or shared.
FINAL_DROPPED = ("model", "created_at", "response", "done")


def _compact(result: OllamaResult) -> OllamaResult:
    """Thousands of results stay in memory: share their repeated strings (a fresh copy of
    each key per parsed chunk) and drop what the result holds elsewhere (~1 KB each)."""
    result.model = sys.intern(result.model)
    if result.done_reason is not None:
        result.done_reason = sys.intern(result.done_reason)
    result.final = {
        sys.intern(key): sys.intern(value) if isinstance(value, str) else value
        for key, value in result.final.items()
        if key not in FINAL_DROPPED
    }
    return result


class _Scope(Mapping[str, Any]):
    """`item` and `index` over the notebook's names, without copying the namespace."""

    def __init__(self, own: dict[str, Any], rest: Mapping[str, Any]) -> None:
        self._own, self._rest = own, rest

    def __getitem__(self, key: str) -> Any:
        return self._own[key] if key in self._own else self._rest[key]

    def __contains__(self, key: object) -> bool:
        return key in self._own or key in self._rest

    def __iter__(self) -> Iterator[str]:
        yield from self._own
        yield from (k for k in self._rest if k not in self._own)

    def __len__(self) -> int:
        return len(set(self._own) | set(self._rest))


async def run_batch(
    job: BatchJob,
    view: Any,
    control: StopControl,
    on_result: Callable[[OllamaBatch], None] = lambda batch: None,
) -> OllamaBatch:
    return await Batch(job, view, control).run(on_result)


def release_if_big(batch: OllamaBatch) -> None:
    """Like a single big answer: give the transient copies' memory back to the OS."""
    from ._stream import RELEASE_AFTER_CHARS, release_freed_memory

    if sum(len(r.text) for r in batch) >= RELEASE_AFTER_CHARS:
        release_freed_memory()


# -- the magic's and the Python API's entry points -------------------------------------

INTERRUPTED = "the batch was interrupted; its responses are closed"
INTERRUPTED_CELL = "the batch was interrupted; _ollama holds what it did (unstarted: skipped)"
HINT_SYNC = "Stop cannot reach a synchronous cell: use Interrupt (■), or await amap(...)"


async def prepare_batch(
    ask: Any,
    items: Any,
    parallel: Any,
    *,
    configured: Mapping[str, Any],
    namespace: Mapping[str, Any],
    no_model_hint: str | None = None,
) -> BatchJob:
    """Check everything and build the first element's request; ValueError (InvalidRequest)
    before anything is sent. `ask.prompt` is the template, with {item} and {index}."""
    from ._prompt import fill_prompt
    from ._request import InvalidRequest, build, resolve_settings

    try:
        found = elements(items)
        parallel = check_parallel(parallel)
    except (BatchInputError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None
    template = ask.prompt
    variables = resolve_settings(ask.given(), configured)["variables"].value

    def fill(scope: Mapping[str, Any]) -> str:
        return fill_prompt(template, scope) if variables else template

    first = next(found.pairs(), None)
    if first is not None:
        try:
            ask = dataclasses.replace(
                ask, prompt=fill(_Scope({"item": first[1], "index": first[0]}, namespace))
            )
        except ValueError as exc:  # PromptVariableError
            raise InvalidRequest(f"{exc}; nothing was sent") from None
    extra = {"no_model_hint": no_model_hint} if no_model_hint else {}
    prepared = await build(ask, configured=configured, namespace=None, **extra)
    payload = prepared.request.payload
    return BatchJob(
        base=prepared.request,
        elements=found,
        fill=fill,
        namespace=namespace,
        parallel=parallel,
        read_timeout=prepared.settings["read_timeout"].value,
        settings={
            "options": payload.get("options") or {},
            "think": payload.get("think"),
            "format": payload.get("format"),
            "parallel": parallel,
        },
    )


def _keep_for_stats(batch: OllamaBatch) -> None:
    from ._api import _keep_for_stats as keep

    for result in batch:
        if result.done_reason != "skipped":
            keep(result)


def _batch_view(kernel: Any, control: StopControl, stop_hint: str | None) -> Any:
    from ._batch_view import NullBatchView, WidgetBatchView

    if kernel is None:
        return NullBatchView()
    from ._kernel import CellOutput

    return WidgetBatchView(CellOutput(kernel), control, stop_hint)


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
    stop_on: Any = None,
    display: bool = True,
) -> OllamaBatch:
    """Run `prompt` once per element of `items`, at most `parallel` requests at once.

    `{item}` in the prompt is the element (a DataFrame row: `{item.column}`,
    `{item[column]}`), `{index}` its position (a Series/DataFrame index label). Returns an
    `OllamaBatch` in input order; one element's failure is recorded there, not raised.
    Other keywords as `generate`. From a synchronous cell, Stop cannot reach the batch:
    Interrupt closes every response (or use `await amap(...)`).
    """
    from ._api import _ask, _kernel
    from ._exceptions import RequestInterrupted
    from ._sync import run_in_thread

    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display)  # fmt: skip
    control = StopControl()
    view = _batch_view(_kernel(display), control, HINT_SYNC)

    async def work(queued: Any) -> OllamaBatch:
        from ._request import configured_in_shell

        job = await prepare_batch(
            ask, items, parallel, configured=configured_in_shell(), namespace={}
        )
        return await run_batch(job, queued, control, _keep_for_stats)

    try:
        return run_in_thread(work, view)
    except RequestInterrupted:
        raise RequestInterrupted(INTERRUPTED) from None


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
    stop_on: Any = None,
    display: bool = True,
) -> OllamaBatch:
    """`map` as a coroutine: `await ollama_nb.amap(...)` in an async cell has a working
    Stop button, as `%%ollama --each` cells do."""
    from ._api import _ask, _kernel
    from ._exceptions import RequestInterrupted
    from ._request import configured_in_shell

    ask = _ask(prompt, model, system, images, think, format, options, keep_alive, host,
               connect_timeout, read_timeout, timeout, retries, stop_on, display)  # fmt: skip
    job = await prepare_batch(ask, items, parallel, configured=configured_in_shell(), namespace={})
    control = StopControl()
    kernel = _kernel(display)
    try:
        if kernel is None:
            return await run_batch(job, _batch_view(None, control, None), control, _keep_for_stats)
        from ._magics import clicks_reach_running_cell

        async with clicks_reach_running_cell() as stop_hint:
            view = _batch_view(kernel, control, stop_hint)
            return await run_batch(job, view, control, _keep_for_stats)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted(INTERRUPTED) from None


async def run_cell_batch(
    magics: Any, line: str, cell: str, view: Any = None, control: StopControl | None = None
) -> OllamaBatch:
    """A `%%ollama --each NAME` cell: `view`/`control` given on the synchronous path,
    else the widget view in the running (async) cell."""
    from IPython.core.error import UsageError

    from ._exceptions import RequestInterrupted
    from ._options import parse_line, to_ask

    options = parse_line(magics.ollama_cell, line)
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    if options.chat or options.background:
        flag = "--chat" if options.chat else "--background"
        raise UsageError(f"%%ollama: --each cannot be combined with {flag}")
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

    def store(batch: OllamaBatch) -> None:
        magics.results.extend(r for r in batch if r.done_reason != "skipped")
        if magics.shell is not None:
            magics.shell.user_ns["_ollama"] = batch
            if options.out:
                magics.shell.user_ns[options.out] = batch

    try:
        if view is not None:
            return await run_batch(job, view, control or StopControl(), store)
        from ._kernel import current_kernel
        from ._magics import clicks_reach_running_cell

        control = StopControl()
        async with clicks_reach_running_cell() as stop_hint:
            live = _batch_view(current_kernel(), control, stop_hint)
            return await run_batch(job, live, control, store)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted(INTERRUPTED_CELL) from None


def run_cell_batch_in_thread(magics: Any, line: str, cell: str, sync_view: Any) -> None:
    """The synchronous path (terminal IPython, `%autoawait off`): a worker thread's loop."""
    from ._batch_view import TextBatchView, WidgetBatchView
    from ._exceptions import RequestInterrupted
    from ._sync import run_in_thread

    control = StopControl()
    view = sync_view(WidgetBatchView, TextBatchView, control)
    try:
        run_in_thread(lambda queued: run_cell_batch(magics, line, cell, queued, control), view)
    except RequestInterrupted:
        raise RequestInterrupted(INTERRUPTED_CELL) from None
