"""``/api/generate``, ``/api/chat`` and ``/api/embed``: checks, scheduling, answers.

The checks come in the order of Ollama's handlers (``server/routes.go``), so a request
with several faults gets the error a real server gives first:

1. the body's fields: types, ``think``, ``keep_alive``, base64 images (400, Go's words);
2. the model name: missing (generate and embed: 404 ``model '' not found``; chat: 400
   ``model is required``), invalid (400 ``invalid model name``), unknown (404
   ``model 'NAME' not found``);
3. nothing to do and ``keep_alive: 0``: unload, ``done_reason: "unload"``;
4. ``think`` on a model that cannot think (400 ``"NAME" does not support thinking``);
   a thinking model thinks when ``think`` is absent;
5. capabilities: ``completion`` (400 ``"NAME" does not support generate|chat``),
   ``insert`` for a ``suffix``, ``tools`` for ``tools``;
6. model options of the wrong type (500, ``option "stop" must be of type array``);
7. nothing to do: load the model, ``done_reason: "load"``;
8. a slot of the model (wait in the queue, or 503 when it is full), then the model's
   load time (``first_chunk_delay``), then errors a runner reports before any output:
   an invalid ``format`` (500), images for a model without ``vision`` (400
   ``this model is missing data required for image input``), an image a vision model
   cannot decode (500), the ``status`` knob; then the answer.

Images for a model without vision: Ollama's runners word it as above; the status has
varied between versions (a 500 prefixed ``Failed to create new sequence:`` in some,
images silently ignored in others). The stand-in answers 400, what current clients
expect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._embedding import embed_text, token_count
from ._exchange import Exchange, now_iso, ns
from ._fields import (
    FieldError,
    check_options,
    check_struct,
    decode_images,
    go_quote,
    parse_keep_alive,
    parse_think,
)
from ._forward import Upstream, UpstreamError, forwardable, stream_answer
from ._images import ReceivedImage, inspect_image
from ._knobs import Knobs
from ._models import ModelStore, StandInModel
from ._names import parse_name
from ._sched import QueueFull, Runner, Scheduler
from ._stream import MALFORMED_LINE, NdjsonStream, wait_forever
from ._text import AnswerPlan, Prompt, plan_answer, prompt_token_count, token_ids, tokenize
from ._tool_calls import plan_round, results_answer

# Nominal cost of one prompt token: the stand-in evaluates no prompt, but clients divide
# by prompt_eval_duration, so it must not be 0.
PROMPT_TOKEN_NS: Final = 100_000
NO_VISION_ERROR: Final = "this model is missing data required for image input"
BAD_IMAGE_ERROR: Final = (
    "Failed to create new sequence: failed to process inputs: image: unknown format"
)
NO_EMBEDDING_ERROR: Final = "this model does not support embeddings"


@dataclass(frozen=True)
class Request:
    """A generate or chat request, after the checks of steps 1-6."""

    model: StandInModel
    name: str  # as the client wrote it: Ollama echoes it in every chunk
    chat: bool
    prompt: Prompt
    prompt_texts: list[str]  # what counts as evaluated prompt
    nothing_to_do: bool  # empty prompt / no messages: load (or unload) only
    keep_alive: float | None
    images: list[ReceivedImage]
    context: list[int]
    stream: bool
    messages: tuple[dict[str, Any], ...] = ()  # chat: as sent (stand-in-tools reads them)
    tools_offered: bool = False


class Inference:
    """The three endpoints that use a model, sharing its store and the scheduler."""

    def __init__(
        self, store: ModelStore, scheduler: Scheduler, upstream: Upstream | None = None
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.upstream = upstream  # forward mode (`_forward`): plain answers from an engine

    # -- generate and chat ---------------------------------------------------------------

    async def generate(self, ex: Exchange) -> None:
        await self._answer(ex, chat=False)

    async def chat(self, ex: Exchange) -> None:
        await self._answer(ex, chat=True)

    async def _answer(self, ex: Exchange, *, chat: bool) -> None:
        try:
            request = self._check(ex.body, chat=chat)
        except FieldError as exc:
            await ex.error(exc.status, exc.message)
            return
        ex.record.images = request.images
        if request.nothing_to_do and request.keep_alive == 0:
            self.scheduler.unload(request.model)
            await ex.json(200, _Reply(request, ex).done_without_answer("unload"))
            return
        runner = self.scheduler.load(request.model, request.keep_alive)
        if request.nothing_to_do:
            try:
                if not await _load_time_and_status(ex):
                    await ex.json(200, _Reply(request, ex).done_without_answer("load"))
            finally:
                self.scheduler.loaded_only(runner)
            return
        await self._with_slot(ex, runner, lambda: self._respond(ex, request))

    async def _with_slot(
        self, ex: Exchange, runner: Runner, work: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            await self.scheduler.acquire(
                runner, ex.knobs.num_parallel, ex.knobs.max_queue, ex.record
            )
        except QueueFull as exc:
            await ex.error(503, str(exc))
            return
        try:
            await work()
        finally:
            self.scheduler.release(runner)

    async def _respond(self, ex: Exchange, request: Request) -> None:
        if await _load_time_and_status(ex):
            return
        error = _runner_error(request)
        if error is not None:
            await ex.error(*error)
            return
        reply = _Reply(request, ex)
        if self.upstream is not None and _forwardable(request, ex.knobs):
            await _answer_forwarded(self.upstream, ex, reply, request)
            return
        plan = plan_answer(request.prompt, ex.knobs)
        if request.tools_offered and request.model.has("tools"):
            try:
                tool_round = plan_round(request.messages)
            except (ValueError, SyntaxError) as exc:
                await ex.error(500, f"stand-in-tools cannot read its prompt: {exc}")
                return
            if tool_round is not None:
                reply.tool_calls = tool_round.calls
                plan = AnswerPlan(tool_round.thinking, (), "stop")
            else:
                plan = AnswerPlan((), tuple(tokenize(results_answer(request.messages))), "stop")
        reply.prompt_eval_count = prompt_token_count(request.prompt_texts)
        if not request.chat:
            spoken = tokenize(request.prompt.system + request.prompt.text) + list(plan.answer)
            reply.context = request.context + token_ids(spoken)
        if request.stream:
            await _answer_streamed(ex, reply, plan)
        else:
            await _answer_whole(ex, reply, plan)

    def _check(self, body: Mapping[str, Any], *, chat: bool) -> Request:
        """Steps 1-6 of the module docstring; FieldError for the first fault."""
        struct = "ChatRequest" if chat else "GenerateRequest"
        think: bool | str | None = None
        keep_alive: float | None = None
        for key in body:  # Go decodes the fields in the order they come
            if key == "think":
                think = parse_think(body[key])
            elif key == "keep_alive":
                keep_alive = parse_keep_alive(body[key])
            else:
                check_struct({key: body[key]}, struct)
        name = str(body.get("model") or "")
        model = self._model(name, missing=(400, "model is required") if chat else None)

        messages: list[dict[str, Any]] = [m for m in body.get("messages") or [] if m]
        if chat:
            user = [m.get("content") or "" for m in messages if m.get("role") == "user"]
            roles = ("system",)
            system = "\n".join(m.get("content") or "" for m in messages if m.get("role") in roles)
            text = user[-1] if user else ""
            prompt_texts = [m.get("content") or "" for m in messages]
            raw_images = [i for m in messages for i in m.get("images") or []]
            nothing_to_do = not messages
        else:
            text = body.get("prompt") or ""
            system = body.get("system") or ""
            prompt_texts = [system, text]
            raw_images = list(body.get("images") or [])
            nothing_to_do = text == ""  # as in Ollama: only the prompt counts
        images = [inspect_image(data) for data in decode_images(raw_images)]

        if not (nothing_to_do and keep_alive == 0):  # an unload skips the model checks
            if model.has("thinking"):
                if think is None:
                    think = True  # Ollama's default for a model that can think
            elif think is not None and think is not False:
                raise FieldError(400, f"{go_quote(name)} does not support thinking")
            if not model.has("completion"):
                endpoint = "chat" if chat else "generate"
                raise FieldError(400, f"{go_quote(name)} does not support {endpoint}")
            full = f"{model.name.host}/{model.name.namespace}/{model.name.model}:{model.name.tag}"
            if body.get("suffix") and not model.has("insert"):
                raise FieldError(400, f"{full} does not support insert")
            if chat and body.get("tools") and not model.has("tools"):
                raise FieldError(400, f"{full} does not support tools")
            check_options(_options(body))

        options = _options(body)
        num_predict = options.get("num_predict")
        stop = options.get("stop")
        prompt = Prompt(
            model=model.display,
            text=text,
            system=system,
            seed=options.get("seed"),
            think=think not in (None, False),
            format=body.get("format"),
            num_predict=int(num_predict) if num_predict is not None else None,
            stops=tuple(stop) if isinstance(stop, list) else (),
            images=tuple(i.describe() for i in images) if model.has("vision") else (),
        )
        return Request(
            model=model,
            name=name,
            chat=chat,
            prompt=prompt,
            prompt_texts=prompt_texts,
            nothing_to_do=nothing_to_do,
            keep_alive=keep_alive,
            images=images,
            context=[c for c in body.get("context") or [] if isinstance(c, int)],
            stream=body.get("stream") is not False,
            messages=tuple(m for m in messages if isinstance(m, dict)),
            tools_offered=bool(chat and body.get("tools")),
        )

    def _model(self, name: str, *, missing: tuple[int, str] | None) -> StandInModel:
        if not name.strip():
            raise FieldError(*(missing or (404, f"model '{name}' not found")))
        parsed = parse_name(name)
        if not parsed.valid:
            raise FieldError(400, "invalid model name")
        model = self.store.get(parsed)
        if model is None:
            raise FieldError(404, f"model '{name}' not found")
        return model

    # -- embed ---------------------------------------------------------------------------

    async def embed(self, ex: Exchange) -> None:
        started = time.monotonic()
        try:
            keep_alive: float | None = None
            for key, value in ex.body.items():
                if key == "keep_alive":
                    keep_alive = parse_keep_alive(value)
                else:
                    check_struct({key: value}, "EmbedRequest")
            name = str(ex.body.get("model") or "")
            if not name.strip():
                raise FieldError(404, f"model '{name}' not found")
            if not parse_name(name).valid:
                raise FieldError(400, "invalid model name")
            texts = _embed_input(ex.body.get("input"))
            model = self.store.get(name)
            if model is None:  # this handler words it the older way
                raise FieldError(404, f"model {go_quote(name)} not found, try pulling it first")
            check_options(_options(ex.body))
        except FieldError as exc:
            await ex.error(exc.status, exc.message)
            return
        runner = self.scheduler.load(model, keep_alive)

        async def work() -> None:
            if await _load_time_and_status(ex):
                return
            loaded = time.monotonic()
            if not texts:
                await ex.json(200, {"model": name, "embeddings": []})
                return
            if not model.has("embedding"):
                await ex.error(400, NO_EMBEDDING_ERROR)
                return
            dimensions = ex.body.get("dimensions") or 0
            await ex.json(
                200,
                {
                    "model": name,
                    "embeddings": [embed_text(model.display, t, dimensions) for t in texts],
                    "total_duration": ns(time.monotonic() - started),
                    "load_duration": ns(loaded - started),
                    "prompt_eval_count": sum(token_count(t) for t in texts),
                },
            )

        await self._with_slot(ex, runner, work)


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    options = body.get("options")
    return options if isinstance(options, dict) else {}


def _embed_input(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if value is None:
        return []
    raise FieldError(400, "invalid input type")


def _runner_error(request: Request) -> tuple[int, str] | None:
    """Errors Ollama's runner gives once the model is loaded, before any output."""
    fmt = request.prompt.format
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        shown = go_quote(json.dumps(fmt, ensure_ascii=False, separators=(",", ":")))
        return 500, f'invalid format: {shown}; expected "json" or a valid JSON Schema object'
    if request.images and not request.nothing_to_do:
        if not request.model.has("vision"):
            return 400, NO_VISION_ERROR
        if any(image.format is None for image in request.images):
            return 500, BAD_IMAGE_ERROR
    return None


async def _load_time_and_status(ex: Exchange) -> bool:
    """The model's load time, then the `status` knob; True when that answered already."""
    if ex.knobs.first_chunk_delay:
        await asyncio.sleep(ex.knobs.first_chunk_delay)
    if ex.knobs.status is not None:
        await ex.error(ex.knobs.status, ex.knobs.error)
        return True
    return False


async def _answer_streamed(ex: Exchange, reply: _Reply, plan: AnswerPlan) -> None:
    stream = NdjsonStream(ex.responder, ex.knobs)
    pieces = [(True, t) for t in plan.thinking] + [(False, t) for t in plan.answer]
    for index, (thinking, token) in enumerate(pieces):
        if index:
            await asyncio.sleep(ex.knobs.token_interval)
        await stream.send(reply.chunk(token, thinking=thinking))
        reply.token_sent()
    for index, call in enumerate(reply.tool_calls):  # each parsed call in a chunk of its own
        if index or pieces:
            await asyncio.sleep(ex.knobs.token_interval)
        await stream.send(reply.tool_chunk(call))
        reply.token_sent()
    await stream.send(reply.final(plan))
    await stream.finish()


def _forwardable(request: Request, knobs: Knobs) -> bool:
    prompt = request.prompt
    return forwardable(
        knobs,
        think=prompt.think,
        tools=request.tools_offered,
        images=bool(request.images),
        fmt=prompt.format,
        system=prompt.system,
        stream=request.stream,
    )


async def _answer_forwarded(
    upstream: Upstream, ex: Exchange, reply: _Reply, request: Request
) -> None:
    """The engine's tokens as this request's chunks, as they arrive (`_forward`)."""
    prompt = request.prompt
    if request.chat:
        messages = [
            {"role": str(m.get("role") or "user"), "content": str(m.get("content") or "")}
            for m in request.messages
        ]
    else:
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages.append({"role": "user", "content": prompt.text})
    ex.record.forwarded = True
    stream = NdjsonStream(ex.responder, ex.knobs)

    async def send(piece: str) -> None:
        await stream.send(reply.chunk(piece, thinking=False))
        reply.token_sent()

    try:
        got = await stream_answer(upstream, ex, messages, _options(ex.body), send)
    except UpstreamError as exc:
        if not ex.responder.headers_sent:
            await ex.error(500, str(exc))
            return
        await stream.send({"error": str(exc)})
        await stream.finish()
        return
    if got.prompt_tokens:
        reply.prompt_eval_count = got.prompt_tokens
    answer = "".join(got.pieces)
    if not request.chat:
        reply.context = request.context + token_ids(tokenize(prompt.system + prompt.text + answer))
    await stream.send(reply.final(AnswerPlan((), tuple(got.pieces), got.done_reason)))
    await stream.finish()


async def _answer_whole(ex: Exchange, reply: _Reply, plan: AnswerPlan) -> None:
    """``"stream": false``: the same timing and faults, then one JSON object."""
    knobs = ex.knobs
    n_tokens = plan.eval_count
    for index in range(n_tokens + 1):  # every token, then the final "line"
        if knobs.stall_after == index:
            if knobs.stall_for is None:
                await wait_forever()
            else:
                await asyncio.sleep(knobs.stall_for)
        if knobs.error_after == index:
            await ex.error(500, knobs.error)
            return
        if knobs.drop_after == index:
            ex.responder.drop()
            return
        if index == n_tokens:
            break
        if index:
            await asyncio.sleep(knobs.token_interval)
        reply.token_sent()
    if knobs.malformed_after is not None and knobs.malformed_after <= n_tokens:
        await ex.responder.send(200, MALFORMED_LINE, "application/json; charset=utf-8")
        return
    await ex.json(200, reply.final(plan, whole=True))


class _Reply:
    """Builds the chunks of one generate/chat response and measures its timing."""

    def __init__(self, request: Request, ex: Exchange) -> None:
        self.model = request.name  # echoed as the client wrote it, as Ollama does
        self.chat = request.chat
        self.started_at = ex.request.started_at
        self.load_seconds = time.monotonic() - ex.request.started_at
        self.knobs = ex.knobs
        self.prompt_eval_count = 1
        self.context: list[int] = []
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.tool_calls: tuple[dict[str, Any], ...] = ()  # stand-in-tools: this round's calls

    def token_sent(self) -> None:
        self.last_token_at = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = self.last_token_at

    def _head(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_iso()}

    def _message(self, content: str, thinking: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        return message

    def chunk(self, token: str, *, thinking: bool) -> dict[str, Any]:
        content, thought = ("", token) if thinking else (token, None)
        if self.chat:
            return {**self._head(), "message": self._message(content, thought), "done": False}
        chunk = {**self._head(), "response": content}
        if thought is not None:
            chunk["thinking"] = thought
        return {**chunk, "done": False}

    def tool_chunk(self, call: dict[str, Any]) -> dict[str, Any]:
        """A chunk carrying one parsed call: empty content, as Ollama's parser sends it."""
        message = {**self._message(""), "tool_calls": [call]}
        return {**self._head(), "message": message, "done": False}

    def done_without_answer(self, reason: str) -> dict[str, Any]:
        """The one object of a load or unload: no metrics, as in Ollama."""
        key, value = ("message", self._message("")) if self.chat else ("response", "")
        return {**self._head(), key: value, "done": True, "done_reason": reason}

    def final(self, plan: AnswerPlan, *, whole: bool = False) -> dict[str, Any]:
        """The ``done`` object: the last stream line, or with ``whole`` the entire answer."""
        content = "".join(plan.answer) if whole else ""
        thinking = "".join(plan.thinking) if whole else ""
        final = self._head()
        if self.chat:
            final["message"] = self._message(content, thinking)
            if whole and self.tool_calls:
                final["message"]["tool_calls"] = list(self.tool_calls)
        else:
            final["response"] = content
            if thinking:
                final["thinking"] = thinking
        final.update(done=True, done_reason=plan.done_reason)
        if not self.chat:
            final["context"] = self.context
        final.update(self._metrics(plan.eval_count + len(self.tool_calls)))
        return final

    def _metrics(self, eval_count: int) -> dict[str, int]:
        span = 0.0
        if self.first_token_at is not None and self.last_token_at is not None:
            span = self.last_token_at - self.first_token_at
        # Measured from first to last token, plus one interval for producing the first
        # token: tokens/s then comes out as 1/token_interval, and a one-token answer
        # does not divide by 0.
        eval_duration = ns(span + self.knobs.token_interval)
        load_duration = ns(self.load_seconds)
        prompt_eval_duration = self.prompt_eval_count * PROMPT_TOKEN_NS
        # The nominal parts can add up to a little more than the wall time measured;
        # keep the total >= its parts, as it is in Ollama.
        parts = load_duration + prompt_eval_duration + eval_duration
        return {
            "total_duration": max(parts, ns(time.monotonic() - self.started_at)),
            "load_duration": load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": prompt_eval_duration,
            "eval_count": eval_count,
            "eval_duration": eval_duration,
        }
