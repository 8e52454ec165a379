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

A dead server: after `UNREACHABLE_AFTER` requests in a row that could not connect (or
found the server busy through all their retries), the batch starts nothing new: a
refused port would otherwise cost a second or two per element (hours for a long batch),
a 503 storm a minute each. The rest end `skipped`, and the record says why
(`OllamaBatch.halted`). An element's `elapsed` runs from its first attempt, backoff
included.

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
between chunks, as always. The total timeout (`--timeout`) runs from the same moment: from
when a request is taken as scheduled (or its first byte), so that with `--parallel` above
the server's slots, time spent queued behind the batch's own requests is not counted as
the request's run time. (The client cannot see the server's queue: this is the batch's
estimate, and a request queued behind other clients' requests still counts that time.)
Both are checked `WATCH_HZ` times a second; a timeout is confirmed at the next check, and
time when this loop itself could not run (a busy kernel) does not count as silence.

What a batch runs over is read by `_elements`; what it produced is an `OllamaBatch`
(`_batch_result`). The Python API's `map`/`amap` are in `_api`, the magic's
`%%ollama --each` cell in `_cell_batch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._batch_record import FAILED
from ._batch_result import OllamaBatch
from ._batch_store import ResultColumns
from ._batch_view import BatchStats, refresh_interval
from ._cache import Caching, KeyMaker, replayed_result
from ._checks import check_prompt_text
from ._client import OllamaClient, map_http_error
from ._config import Timeouts
from ._elements import BatchInputError, Elements, ElementScope, check_parallel, elements
from ._exceptions import (
    InvalidRequest,
    OllamaConnectionError,
    OllamaError,
    OllamaResponseError,
    OllamaTimeoutError,
)
from ._prompt import Parts, PromptVariableError, fill_parts, template_parts
from ._request import build, cache_miss, keyed_path, resolve_settings
from ._result import OllamaResult, settings_of
from ._stream import (
    RELEASE_AFTER_CHARS,
    SETTLE_SECONDS,
    Request,
    StopControl,
    StopScan,
    Transcript,
    build_result,
    chunk_text,
    release_freed_memory,
)

WATCH_HZ = 10
LOOP_STALL = 0.2  # the watch ran this much later than asked: the time is not the server's
BUSY_RETRIES = 10  # 503 "server busy": tries again, 0.5 s, 1 s, ... at most BUSY_MAX_WAIT apart
BUSY_FIRST_WAIT = 0.5
BUSY_MAX_WAIT = 8.0
RECONNECTS = 1  # a connection lost before any byte arrived: sent once more
GATEWAY_LOST = (502, 504)  # a balancer's answer when the server behind it went away
DRAIN_SECONDS = 1.0
UNREACHABLE_AFTER = 8  # requests in a row that never reached the server: start no more
RELEASE_AFTER_ELEMENTS = 100  # a batch this long: memory handed back to the OS at its end


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
    # The cache file (`_cache`): each element is looked up there before it is sent.
    caching: Caching | None = None
    keys: KeyMaker | None = None
    # The first element's prompt as checked and built: sent as is, not filled again (its
    # fields, properties included, are read once).
    first_prompt: str | None = None


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
    running_from: float | None = None  # first taken as scheduled (or streaming): `total` clock
    cancel_reason: str | None = None  # "stopped", "interrupted", "read", "total"
    suspect: str | None = None  # a timeout seen at the last check, to confirm at this one
    answered: bool = False  # the final chunk came; only the end of the body may follow
    cache_key: str | None = None  # where its answer is recorded, once finished


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


def _never_reached(flight: Flight, result: OllamaResult) -> bool:
    """The request ended before any byte of an answer because the server could not be
    reached (refused, connect timeout, a gateway's 502/504) or stayed busy (503)."""
    error = result.error
    if flight.first_byte_at is not None or not isinstance(error, OllamaError):
        return False
    if isinstance(error, OllamaTimeoutError):
        return error.kind == "connect"
    return _lost_before_any_byte(error) or _busy(error)


class Batch:
    """Runs a `BatchJob` to its end; see the module's docstring for the rules."""

    def __init__(self, job: BatchJob, view: Any, control: StopControl) -> None:
        self.job = job
        self.view = view
        self.control = control
        self.flights: dict[asyncio.Task[OllamaResult], Flight] = {}
        self.stats = BatchStats(model=job.base.model, total=job.elements.total)
        self.capacity = 1  # the most of this batch's requests seen streaming at once
        self.unreachable = 0  # requests in a row that never reached the server
        self.halted: str | None = None  # why the batch started nothing new, if it did
        self.begun = 0  # elements started (or whose prompt failed)
        self.streaming = 0
        self.started = time.monotonic()
        self.client, self._http = pooled_client(job.base.client)
        # Stored as they land; every element's request asks for what the first one does.
        self.results = ResultColumns(
            job.elements.total,
            model=job.base.model,
            host=self.client.host,
            settings=settings_of(job.base.payload),
        )

    # -- one element ----------------------------------------------------------------------

    def _request(self, prompt: str) -> Request:
        base = self.job.base
        payload = {**base.payload, "prompt": prompt}
        return dataclasses.replace(base, client=self.client, payload=payload, prompt=prompt)

    async def _attempt(self, flight: Flight) -> None:
        # The element's clock runs from its first attempt: `elapsed` includes the waits.
        transcript = flight.transcript = Transcript(started=flight.started)
        flight.sent_at, flight.first_byte_at, flight.clock_from = time.monotonic(), None, None
        flight.running_from = None  # each attempt's answer starts over
        flight.suspect = None
        request = flight.request
        scan = StopScan(request.stop_on) if request.stop_on is not None else None
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
                    if scan is not None and text and scan.add(text):
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
        namespace = ElementScope({"item": item, "index": label}, self.job.namespace)
        try:
            if position == 0 and self.job.first_prompt is not None:
                prompt = self.job.first_prompt
            else:
                prompt = self.job.fill(namespace)
        except Exception as exc:  # this element's prompt cannot be made: its own failure
            error = OllamaError(f"element {position}: {_fill_error(exc)}")
            self._store(position, self._failed(error))
            return None
        try:
            check_prompt_text(prompt)
        except ValueError as exc:  # a lone surrogate: it cannot be sent as UTF-8
            self._store(position, self._failed(OllamaError(f"element {position}: {exc}")))
            return None
        key = None
        if self.job.caching is not None and self.job.keys is not None:
            key = self.job.keys.key(prompt)
            if self._replay(position, self.job.caching, key):
                return None  # no request, no slot
        flight = Flight(position, self._request(prompt), cache_key=key)
        task = asyncio.ensure_future(self._element(flight))
        self.flights[task] = flight
        return task

    def _replay(self, position: int, caching: Caching, key: str) -> bool:
        """Store the element's recorded answer, if the cache file has it."""
        if caching.mode == "refresh":
            return False
        entry = caching.file.get(key, refresh=False)  # refreshed once, as the batch began
        if entry is None:
            caching.file.misses += 1
            return False
        caching.file.hits += 1
        self.stats.replayed += 1
        if not self.job.base.want_json and self.results.put_entry(position, entry):
            self.stats.done += 1  # a finished answer: never a failure
        else:
            want_json = self.job.base.want_json
            self._store(position, replayed_result(entry, self.client.host, want_json))
        return True

    def _failed(self, error: OllamaError) -> OllamaResult:
        result = OllamaResult(model=self.job.base.model, done_reason="error", error=error)
        result.host = self.client.host
        return result

    def _store(self, position: int, result: OllamaResult) -> None:
        self.results.put(position, result)
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
        self._store(flight.position, result)
        if self.job.caching is not None and flight.cache_key is not None:
            self.job.caching.record(result, flight.cache_key)
        self._note_reach(flight, result)

    def _note_reach(self, flight: Flight, result: OllamaResult) -> None:
        """Count the requests in a row that never reached the server; halt at the limit."""
        if flight.cancel_reason is not None:
            return  # stopped, interrupted or timed out by the batch: says nothing
        if not _never_reached(flight, result):
            self.unreachable = 0
            return
        self.unreachable += 1
        if self.unreachable >= UNREACHABLE_AFTER and self.halted is None:
            busy = isinstance(result.error, OllamaError) and _busy(result.error)
            what = (
                "found the server busy (HTTP 503) through all their retries"
                if busy
                else "could not connect"
            )
            self.halted = (
                f"{UNREACHABLE_AFTER} requests in a row {what}, so the batch started no"
                f" more (last: {str(result.error).rstrip('.')})"
            )

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
            if flight.running_from is None and flight.first_byte_at is not None:
                flight.running_from = flight.first_byte_at
            running = flight.running_from
            if total is not None and running is not None and now - running > total:
                reason: str | None = "total"
            elif flight.first_byte_at is not None:
                reason = "read" if now - flight.last_byte_at > read else None
            elif flight.sent_at is None:  # backing off after a 503
                reason = None
            elif free > 0:  # presumed scheduled: model load and prompt evaluation
                free -= 1
                if flight.clock_from is None:
                    flight.clock_from = now
                if flight.running_from is None:
                    flight.running_from = now
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
        return OllamaBatch(
            self.results,  # an element that never started reads as `skipped`
            model=self.job.base.model,
            elapsed=time.monotonic() - self.started,
            index=self.job.elements.index,
            settings=self.job.settings,
            halted=self._halted_line(),
        )

    def _halted_line(self) -> str | None:
        if self.halted is None:
            return None
        left = self.job.elements.total - self.begun
        return f"{self.halted}; {left} skipped" if left else self.halted

    async def run(self, on_result: Callable[[OllamaBatch], None]) -> OllamaBatch:
        """Hand the batch to `on_result` on every path (also an interrupt, which is then
        re-raised), show its record, and return it."""
        if self.job.caching is not None:
            self.job.caching.file.refresh()  # what other kernels recorded meanwhile
        self.view.start(self.snapshot())
        stop_wait = asyncio.ensure_future(self.control.bind().wait())
        ticker = asyncio.ensure_future(self._tick())
        source = self.job.elements.pairs()
        try:
            while True:
                while (
                    len(self.flights) < self.job.parallel
                    and not self.control.requested
                    and self.halted is None
                ):
                    pair = next(source, None)
                    if pair is None:
                        break
                    self._start(self.begun, *pair)
                    self.begun += 1
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


async def run_batch(
    job: BatchJob,
    view: Any,
    control: StopControl,
    on_result: Callable[[OllamaBatch], None] = lambda batch: None,
) -> OllamaBatch:
    batch = await Batch(job, view, control).run(on_result)
    release_if_big(batch)
    return batch


def release_if_big(batch: OllamaBatch) -> None:
    """Like a single big answer: give the transient copies' memory back to the OS. A long
    batch leaves the same behind: its parsed chunks (tens of thousands, freed) were
    allocated between its results, so glibc keeps that heap; RSS would stay ~1.5x the
    answers above what the results hold."""
    if len(batch) >= RELEASE_AFTER_ELEMENTS or sum(map(len, batch.texts)) >= RELEASE_AFTER_CHARS:
        release_freed_memory()


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
    try:
        found = elements(items)
        parallel = check_parallel(parallel)
    except (BatchInputError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None
    template = ask.prompt
    variables = resolve_settings(ask.given(), configured)["variables"].value

    parts: Parts | None = None  # the template split once, at its first fill

    def fill(scope: Mapping[str, Any]) -> str:
        nonlocal parts
        if not variables:
            return template
        if parts is None:  # here, not before: a template that cannot be split fails as
            parts = template_parts(template)  # its elements do, each one
        return fill_parts(parts, scope)

    first = next(found.pairs(), None)
    first_prompt = None
    if first is not None:
        try:
            first_prompt = fill(ElementScope({"item": first[1], "index": first[0]}, namespace))
        except Exception as exc:  # a field that cannot be filled, a property that raises, …
            raise InvalidRequest(f"element 0: {_fill_error(exc)}; nothing was sent") from None
        ask = dataclasses.replace(ask, prompt=first_prompt)
    extra = {"no_model_hint": no_model_hint} if no_model_hint else {}
    prepared = await build(ask, configured=configured, namespace=None, lookup=False, **extra)
    if prepared.refusal is not None:  # the model cannot take what every element sends
        raise prepared.refusal
    payload = prepared.request.payload
    caching = prepared.caching
    keys = KeyMaker(keyed_path(prepared.request), payload, ask.stop_on) if caching else None
    if caching is not None and keys is not None and caching.mode == "replay":
        check_all_recorded(caching, keys, found, fill, namespace, prepared.request.model)
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
        caching=caching,
        keys=keys,
        first_prompt=first_prompt,
    )


def check_all_recorded(
    caching: Caching,
    keys: KeyMaker,
    found: Elements,
    fill: Callable[[Mapping[str, Any]], str],
    namespace: Mapping[str, Any],
    model: str,
) -> None:
    """cache_mode "replay": every element's answer is in the file, or the batch raises
    `OllamaCacheMissError` for the first one missing, before anything is shown or sent."""
    caching.file.refresh()
    for label, item in found.pairs():
        try:
            prompt = fill(ElementScope({"item": item, "index": label}, namespace))
        except Exception:
            continue  # fails as that element, sending nothing
        if not caching.file.has(keys.key(prompt)):
            caching.file.misses += 1
            raise cache_miss(caching, model, prompt)


def _fill_error(exc: Exception) -> str:
    """Why an element's prompt cannot be made: `_prompt`'s own words name the field."""
    if isinstance(exc, PromptVariableError):
        return str(exc)
    return f"cannot fill the prompt: {exc}"
