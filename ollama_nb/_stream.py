"""Drive one streaming request to its end, whatever that end is.

Three tasks run side by side on one event loop (`race`, which `%ollama pull` uses too):

- the consumer reads chunks from the client into a `Transcript`;
- the ticker refreshes the view (elapsed time, tokens, new text) `TICK_HZ` times a second,
  however fast tokens arrive, so the view costs the same at 10 or 20k tokens/s; the first
  text is shown as soon as it arrives (one extra refresh), not at the next tick;
- the stop waiter wakes when the Stop button (or `--stop-on`) asks to stop.

The first of "consumer finished", "stop asked", "total deadline passed" or "this task was
cancelled" (a kernel interrupt) decides the outcome. Every path cancels the consumer and
waits for it, so the HTTP response is closed before the result is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._cancel import InterruptedInTool
from ._client import OllamaClient
from ._exceptions import OllamaError, OllamaResponseError, OllamaTimeoutError
from ._result import OllamaResult, settings_of
from ._tools import DEFAULT_MAX_STEPS, OnCaller, Tool, ToolCall, ToolInterrupted, read_calls

TICK_HZ = 10
SETTLE_SECONDS = 5.0  # closing a response is local work; never wait on it longer than this
STOP_ON_OVERLAP = 1024  # chars before the new text that a --stop-on match may start in
RELEASE_AFTER_CHARS = 1 << 20  # after an answer this big, hand freed memory back to the OS
TRIM_AGAIN_SECONDS = 0.5


@dataclass
class Transcript:
    """What has arrived so far. Text is kept as parts, one per `flush` (view refresh);
    views read the parts they lack."""

    started: float = field(default_factory=time.monotonic)
    answer: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    chunks: int = 0
    first_token_at: float | None = None
    final: dict[str, Any] | None = None
    # Tokens since the last flush. A str per token costs ~60 bytes for ~7 of text: joined
    # at each refresh, a 2 MB answer no longer passes through ~20 MB of small objects.
    new_answer: list[str] = field(default_factory=list, repr=False)
    new_thinking: list[str] = field(default_factory=list, repr=False)
    # Set by the first text or thinking: the view shows it at once, not at the next tick.
    first_text: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # Tools (`_tool_loop`): every call asked for, in order; the raw calls of the response
    # being read; the assistant and tool messages of the rounds run so far.
    calls: list[ToolCall] = field(default_factory=list)
    round_calls: list[dict[str, Any]] = field(default_factory=list, repr=False)
    exchange: list[dict[str, Any]] = field(default_factory=list, repr=False)
    calls_version: int = 0  # bumped when a call is added or changes: views redraw them
    max_steps_reached: bool = False

    def calls_changed(self) -> None:
        self.calls_version += 1

    def add_calls(self, tool_calls: Any) -> None:
        """Calls as they arrive in a chunk; shown at once, run by `_tool_loop`."""
        raw = tool_calls if isinstance(tool_calls, list) else []
        self.round_calls.extend(raw)
        self.calls.extend(read_calls(raw))
        self.calls_changed()
        self.first_text.set()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def add(self, text: str, thinking: str) -> None:
        if thinking:
            self.new_thinking.append(thinking)
        if text:
            self.new_answer.append(text)
        if text or thinking:
            self.chunks += 1
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
                self.first_text.set()

    def flush(self) -> None:
        """Move what arrived since the last flush into `answer` / `thinking`, one part each."""
        for new, parts in ((self.new_thinking, self.thinking), (self.new_answer, self.answer)):
            if new:
                parts.append("".join(new))
                new.clear()


class View(Protocol):
    """Where a running request shows itself. Called on the loop that drives it."""

    def start(self, model: str) -> None: ...

    def update(self, transcript: Transcript) -> None: ...

    def finish(self, result: OllamaResult) -> None: ...


class StopControl:
    """The Stop button's side of a request: `stop()` may be called from the loop's thread."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._requested = False

    def bind(self) -> asyncio.Event:
        self._event = asyncio.Event()
        if self._requested:
            self._event.set()
        return self._event

    def stop(self) -> None:
        self._requested = True
        if self._event is not None:
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._requested


@dataclass
class Request:
    """A request ready to send: the endpoint, its JSON body and how to read its chunks."""

    client: OllamaClient
    path: str
    payload: dict[str, Any]
    model: str
    prompt: str = ""
    total_timeout: float | None = None
    stop_on: re.Pattern[str] | None = None
    want_json: bool = False
    context: dict[str, str] = field(default_factory=dict)  # --context: name -> summary
    # Tools (`_tools`, `_tool_loop`): by name; None: a plain request.
    tools: Mapping[str, Tool] | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    confirm: Callable[[ToolCall], Awaitable[bool]] | None = None  # --confirm: Run / Skip
    on_caller: OnCaller | None = None  # runs a tool on the cell's thread (`_sync`)

    @property
    def is_chat(self) -> bool:
        return self.path == "/api/chat"


def chunk_text(chunk: dict[str, Any], chat: bool) -> tuple[str, str]:
    """(answer text, thinking text) carried by one chunk of /api/chat or /api/generate.

    A field of the wrong type (`"message": "str"`, a number as text) is bad data from the
    server: an OllamaResponseError, never a raw AttributeError.
    """
    where = chunk
    if chat:
        where = chunk.get("message") or {}
        if type(where) is not dict:
            raise OllamaResponseError(
                f"the server sent a chunk whose 'message' is not an object: {_preview(chunk)}"
            )
    text = where.get("content" if chat else "response") or ""
    thinking = where.get("thinking") or ""
    if type(text) is not str or type(thinking) is not str:  # per token: kept cheap
        raise OllamaResponseError(
            f"the server sent a chunk with text that is not a string: {_preview(chunk)}"
        )
    return text, thinking


def _preview(chunk: dict[str, Any], limit: int = 80) -> str:
    text = json.dumps(chunk, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


class StopScan:
    """Looks for a `--stop-on` match in a growing answer: each new piece is searched
    together with the `STOP_ON_OVERLAP` characters before it (a match may span pieces),
    never the whole answer again, so a long answer costs linear time."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self._text = ""  # the whole answer: `^`, `$` and lookbehinds see the real text
        self._searched = 0  # length of the text already searched

    def add(self, text: str) -> bool:
        """Append `text`; whether the pattern now matches."""
        self._text += text
        found = self.pattern.search(self._text, max(0, self._searched - STOP_ON_OVERLAP))
        self._searched = len(self._text)
        return found is not None


async def stream_response(request: Request, transcript: Transcript, control: StopControl) -> None:
    """Stream one response of the request into the transcript."""
    scan = StopScan(request.stop_on) if request.stop_on is not None else None
    async with contextlib.aclosing(request.client.stream(request.path, request.payload)) as chunks:
        async for chunk in chunks:
            text, thinking = chunk_text(chunk, request.is_chat)
            transcript.add(text, thinking)
            # An OpenAI-compatible server's final chunk has no message (`_openai`).
            calls = (chunk.get("message") or {}).get("tool_calls")
            if request.tools is not None and calls:
                transcript.add_calls(calls)
            if chunk.get("done"):
                # /api/generate's "context" holds one token id per token of the whole
                # exchange (deprecated by Ollama, never sent back here): as Python ints,
                # ~5x the answer's size, kept for the session by `_ollama.final`.
                chunk.pop("context", None)
                transcript.final = chunk
                return
            if scan is not None and text and scan.add(text):
                control.stop()
                return
    raise OllamaResponseError("the stream ended without its final 'done' chunk")


async def settle(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for them, so that the response is closed on return."""
    for task in tasks:
        task.cancel()
    # Bounded: a response that refuses to close must not hang the cell.
    await asyncio.wait(tasks, timeout=SETTLE_SECONDS)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # seen: an outcome already decided elsewhere is not an error


Outcome = Literal["done", "stopped", "deadline"]


async def race(
    consume: Coroutine[Any, Any, None],
    refresh: Callable[[], None],
    control: StopControl,
    deadline: float | None = None,
    hz: float = TICK_HZ,
    wake: asyncio.Event | None = None,
) -> Outcome:
    """Run `consume` until it ends, Stop is asked for, or `deadline` seconds pass, calling
    `refresh` `hz` times a second meanwhile, and once more as soon as `wake` is set.
    Re-raises what `consume` raised, and returns only once everything is cancelled and
    waited for: the response is closed."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(1 / hz)
            refresh()

    async def early() -> None:
        if wake is not None:
            await wake.wait()
            refresh()

    consumer = asyncio.ensure_future(consume)
    waiter = asyncio.ensure_future(control.bind().wait())
    ticker = asyncio.ensure_future(tick())
    eager = asyncio.ensure_future(early())
    try:
        done, _ = await asyncio.wait(
            {consumer, waiter}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
        )
        if control.requested:  # the button, or --stop-on (which also ends the consumer)
            return "stopped"
        if consumer in done:
            consumer.result()
            return "done"
        return "deadline"
    finally:
        await settle([consumer, waiter, ticker, eager])


Consume = Callable[
    [Request, Transcript, StopControl, Callable[[], None]], Coroutine[Any, Any, None]
]


def one_response(
    request: Request, transcript: Transcript, control: StopControl, _refresh: Callable[[], None]
) -> Coroutine[Any, Any, None]:
    """A request without tools: one streamed response (the ticker refreshes the view)."""
    return stream_response(request, transcript, control)


async def drive(
    request: Request,
    view: View,
    control: StopControl,
    on_result: Callable[[OllamaResult], None],
    consume: Consume | None = None,
) -> OllamaResult:
    """Run the request; hand the result to `on_result` on every path, then return it.

    `consume` fills the transcript: one streamed response unless given (the tool loop,
    `_tool_loop.converse`, streams several). A cancellation (kernel interrupt) is
    re-raised after the result is handed over.
    """
    consume = consume or one_response
    transcript = Transcript()
    view.start(request.model)

    def refresh() -> None:
        transcript.flush()
        view.update(transcript)

    reason: str | None = None
    error: BaseException | None = None
    try:
        outcome = await race(
            consume(request, transcript, control, refresh),
            refresh,
            control,
            request.total_timeout,
            wake=transcript.first_text,
        )
        if outcome == "stopped":
            reason = "stopped"
        elif outcome == "deadline":
            error = OllamaTimeoutError(
                f"total timeout: the request ran for its whole {request.total_timeout:g} s"
                " (raise --timeout, or use --stop-on / num_predict to bound the answer)",
                "total",
            )
    except OllamaError as exc:
        error = exc
    except (asyncio.CancelledError, KeyboardInterrupt):
        reason = "interrupted"
        raise
    except ToolInterrupted:
        # Interrupt (■) inside a running tool: the loop ends as an interrupted request.
        reason = "interrupted"
        raise InterruptedInTool from None
    except Exception as exc:  # a bug: still record it as an error, not as a finished answer
        error = exc
    finally:
        result = build_result(request, transcript, reason, error)
        view.finish(result)
        on_result(result)
        if len(result.text) + len(result.thinking) >= RELEASE_AFTER_CHARS:
            release_freed_memory()
    return result


def release_freed_memory() -> None:
    """glibc keeps the heap that a big answer's transient copies (chunks, record, message)
    grew; RSS would stay several times the answer's size. Ask it to give that back."""
    if sys.platform.startswith("linux"):
        sys.stdout.flush()  # in a kernel: wait until the IOPub thread has sent the record
        _malloc_trim()
        # The record's ZMQ frames (sent zero-copy) and the cell's own leftovers are freed
        # only after this returns, once the reply is out: give those back a moment later.
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to wait for
            asyncio.get_running_loop().call_later(TRIM_AGAIN_SECONDS, _malloc_trim)


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def build_result(
    request: Request, transcript: Transcript, reason: str | None, error: BaseException | None
) -> OllamaResult:
    transcript.flush()
    final = transcript.final or {}
    result = OllamaResult(
        model=str(final.get("model") or request.model),
        text="".join(transcript.answer),
        thinking="".join(transcript.thinking),
        elapsed=transcript.elapsed(),
        ttft=(
            transcript.first_token_at - transcript.started
            if transcript.first_token_at is not None
            else None
        ),
        host=request.client.host,
        chunks=transcript.chunks,
        final=final,
        prompt=request.prompt,
        settings=settings_of(request.payload),
        context=dict(request.context),
    )
    if request.tools is not None:
        result.tool_calls = list(transcript.calls)
        result.tool_messages = list(transcript.exchange)
    result.eval_count = _int_or_none(final.get("eval_count"))
    result.prompt_eval_count = _int_or_none(final.get("prompt_eval_count"))
    eval_ns = _int_or_none(final.get("eval_duration"))
    if result.eval_count is not None and eval_ns:
        result.tokens_per_second = result.eval_count / eval_ns * 1e9
    if error is None and reason is None and request.want_json:
        error = _parse_json(result)
    if error is not None:
        # Kept in `_ollama` and the session's history: without the frames and the httpx
        # exception it was raised from, which would keep the whole request alive.
        result.error = error.with_traceback(None)
        error.__context__ = None
        if isinstance(error, OllamaError):
            error.partial_text = result.text
        if isinstance(error, OllamaTimeoutError):
            result.done_reason, result.timeout_kind = "timeout", error.kind
        else:
            result.done_reason = "error"
    elif reason is not None:
        result.done_reason = reason
    elif transcript.max_steps_reached:
        result.done_reason = "max_steps"
    else:
        # As the server sent it; None when it sent none (not silently "stop").
        sent = final.get("done_reason")
        result.done_reason = str(sent) if sent not in (None, "") else None
    result.stopped = result.done_reason == "stopped"
    return result


def _parse_json(result: OllamaResult) -> OllamaError | None:
    try:
        result.json = json.loads(result.text)
    except ValueError as exc:
        return OllamaResponseError(f"the answer is not valid JSON ({exc}); the text is kept")
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
