"""The Ollama endpoints of the stand-in, with the response shapes of Ollama's API.

Each handler gets an :class:`Exchange` (the request, its record, the knobs and a
responder) and writes exactly one response, or none when a knob says to close.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from ._http import HttpRequest, Responder, ResponseEnded
from ._knobs import OPTION_PREFIX, KnobError, Knobs, knobs_from_options
from ._models import ModelStore, layers_for, normalize_name
from ._record import RequestRecord
from ._stream import MALFORMED_LINE, NdjsonStream, encode_json, wait_forever
from ._text import AnswerPlan, Prompt, plan_answer, prompt_token_count, token_ids, tokenize

VERSION: Final = "0.0.0-stand-in"
ROOT_TEXT: Final = "Ollama is running (stand-in)"
JSON_TYPE: Final = "application/json; charset=utf-8"
TEXT_TYPE: Final = "text/plain; charset=utf-8"
# Nominal cost of one prompt token: the stand-in evaluates no prompt, but clients divide
# by prompt_eval_duration, so it must not be 0.
PROMPT_TOKEN_NS: Final = 100_000


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ns(seconds: float) -> int:
    return max(1, round(seconds * 1e9))


@dataclass
class Exchange:
    """One request being answered."""

    request: HttpRequest
    record: RequestRecord
    responder: Responder
    knobs: Knobs
    body: dict[str, Any]  # {} when the request had no JSON object body

    async def json(self, status: int, value: object) -> None:
        await self.responder.send(status, encode_json(value), JSON_TYPE)

    async def error(self, status: int, message: str) -> None:
        await self.json(status, {"error": message})

    async def text(self, status: int, text: str) -> None:
        await self.responder.send(status, text.encode(), TEXT_TYPE)


Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """A request's parsed body and effective knobs, with the errors found on the way."""

    body: Any  # parsed JSON, or None
    body_error: str | None  # answered with 400 by endpoints that take a body
    knobs: Knobs
    knob_error: str | None  # answered with 400


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    """(parsed JSON or None, the error a body-taking endpoint should answer 400 with)."""
    if not raw.strip():
        return None, "missing request body"
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON in request body: {exc}"
    if not isinstance(value, dict):
        return value, "request body must be a JSON object"
    return value, None


class BadField(Exception):
    """A request field has the wrong type: answered with 400 and this message."""


class Endpoints:
    """Routes requests to the endpoint handlers; holds the model store."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        # (method, path) -> (handler, takes a JSON body)
        self._routes: dict[tuple[str, str], tuple[Handler, bool]] = {
            ("GET", "/"): (self._root, False),
            ("HEAD", "/"): (self._root, False),
            ("GET", "/api/version"): (self._version, False),
            ("HEAD", "/api/version"): (self._version, False),
            ("GET", "/api/tags"): (self._tags, False),
            ("HEAD", "/api/tags"): (self._tags, False),
            ("GET", "/api/ps"): (self._ps, False),
            ("POST", "/api/show"): (self._show, True),
            ("POST", "/api/generate"): (self._generate, True),
            ("POST", "/api/chat"): (self._chat, True),
            ("POST", "/api/pull"): (self._pull, True),
        }

    def prepare(self, request: HttpRequest, base: Knobs) -> Prepared:
        """Parse the body and resolve the knobs, before the request is recorded."""
        body, body_error = parse_body(request.body)
        knobs, knob_error = base, None
        options = body.get("options") if isinstance(body, dict) else None
        if isinstance(options, Mapping):
            try:
                knobs = base.merged(knobs_from_options(options), prefix=OPTION_PREFIX)
            except KnobError as exc:
                knob_error = str(exc)
        return Prepared(body, body_error, knobs, knob_error)

    async def handle(
        self,
        request: HttpRequest,
        prepared: Prepared,
        record: RequestRecord,
        responder: Responder,
    ) -> None:
        body = prepared.body if prepared.body_error is None else {}
        exchange = Exchange(request, record, responder, prepared.knobs, body)
        try:
            await self._dispatch(exchange, prepared.body_error, prepared.knob_error)
        except BadField as exc:
            await exchange.error(400, str(exc))
        except ResponseEnded:
            pass  # an error line or a dropped connection already ended the response

    async def _dispatch(self, ex: Exchange, body_error: str | None, knob_error: str | None) -> None:
        if ex.knobs.close_before_headers:
            ex.responder.drop()
            return
        key = ex.knobs.api_key
        if key is not None and ex.request.headers.get("authorization") != f"Bearer {key}":
            await ex.error(401, "unauthorized")
            return
        route = self._routes.get((ex.request.method, ex.request.path))
        if route is None:
            await ex.text(404, "404 page not found")  # what Ollama's router answers
            return
        handler, takes_body = route
        if takes_body and body_error is not None:
            await ex.error(400, body_error)
            return
        if knob_error is not None:
            await ex.error(400, knob_error)
            return
        await handler(ex)

    async def _before_output(self, ex: Exchange, *, loads_model: bool = False) -> bool:
        """Model "load" time, then the `status` knob; True when that answered already.

        Only generate and chat load a model, so only they wait `first_chunk_delay`: as
        in Ollama, listing models stays instant while a model loads.
        """
        if loads_model and ex.knobs.first_chunk_delay:
            await asyncio.sleep(ex.knobs.first_chunk_delay)
        if ex.knobs.status is not None:
            await ex.error(ex.knobs.status, ex.knobs.error)
            return True
        return False

    # -- simple endpoints --------------------------------------------------------------

    async def _root(self, ex: Exchange) -> None:
        # No `status` knob here: the health check keeps answering, so scripts can still
        # tell that the server is up.
        await ex.text(200, ROOT_TEXT)

    async def _version(self, ex: Exchange) -> None:
        if not await self._before_output(ex):
            await ex.json(200, {"version": VERSION})

    async def _tags(self, ex: Exchange) -> None:
        if not await self._before_output(ex):
            await ex.json(200, {"models": [m.tags_entry() for m in self.store.all()]})

    async def _ps(self, ex: Exchange) -> None:
        if not await self._before_output(ex):
            running = self.store.running()
            await ex.json(200, {"models": [m.ps_entry(expires) for m, expires in running]})

    async def _show(self, ex: Exchange) -> None:
        name = _model_name(ex.body)
        model = self.store.get(name)
        if model is None:
            await ex.error(404, f"model '{name}' not found")
            return
        if not await self._before_output(ex):
            await ex.json(200, model.show())

    # -- generate and chat -------------------------------------------------------------

    async def _generate(self, ex: Exchange) -> None:
        prompt = _field(ex.body, "prompt", str, "")
        system = _field(ex.body, "system", str, "")
        template = _field(ex.body, "template", str, "")
        context = _field(ex.body, "context", list, [])
        await self._answer(
            ex,
            chat=False,
            prompt_text=prompt,
            system=system,
            prompt_texts=[system, prompt],
            # As in Ollama: nothing to evaluate means "just load the model".
            load_only=not (prompt or system or template),
            context=[c for c in context if isinstance(c, int)],
        )

    async def _chat(self, ex: Exchange) -> None:
        messages = _field(ex.body, "messages", list, [])
        if not all(isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages):
            raise BadField("messages must be objects with a string 'content'")
        user = [m.get("content", "") for m in messages if m.get("role") == "user"]
        system = "\n".join(m.get("content", "") for m in messages if m.get("role") == "system")
        await self._answer(
            ex,
            chat=True,
            prompt_text=user[-1] if user else "",
            system=system,
            prompt_texts=[m.get("content", "") for m in messages],
            load_only=not messages,
            context=[],
        )

    async def _answer(
        self,
        ex: Exchange,
        *,
        chat: bool,
        prompt_text: str,
        system: str,
        prompt_texts: list[str],
        load_only: bool,
        context: list[int],
    ) -> None:
        name = _model_name(ex.body)
        model = self.store.get(name)
        if model is None:
            await ex.error(404, f'model "{name}" not found, try pulling it first')
            return
        think = ex.body.get("think")
        wants_thinking = think not in (None, False, "")
        if wants_thinking and not model.can_think:
            await ex.error(400, f'"{name}" does not support thinking')
            return
        fmt = ex.body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            raise BadField(f'invalid format {fmt!r}: expected "json" or a JSON schema object')
        options = _field(ex.body, "options", dict, {})
        prompt = Prompt(
            model=model.name,
            text=prompt_text,
            system=system,
            seed=options.get("seed"),
            think=wants_thinking,
            format=fmt,
            num_predict=_num_predict(options),
            stops=_stops(options),
        )

        if await self._before_output(ex, loads_model=True):
            return
        self.store.mark_used(model)
        load_seconds = time.monotonic() - ex.request.started_at
        reply = _Reply(name, chat, ex.request.started_at, load_seconds, ex.knobs)
        if load_only:
            await ex.json(200, reply.load_response())
            return
        plan = plan_answer(prompt, ex.knobs)
        reply.prompt_eval_count = prompt_token_count(prompt_texts)
        if not chat:
            reply.context = context + token_ids(tokenize(system + prompt_text) + list(plan.answer))
        if ex.body.get("stream", True) is False:
            await self._answer_whole(ex, reply, plan)
        else:
            await self._answer_streamed(ex, reply, plan)

    async def _answer_streamed(self, ex: Exchange, reply: _Reply, plan: AnswerPlan) -> None:
        stream = NdjsonStream(ex.responder, ex.knobs)
        pieces = [(True, t) for t in plan.thinking] + [(False, t) for t in plan.answer]
        for index, (thinking, token) in enumerate(pieces):
            if index:
                await asyncio.sleep(ex.knobs.token_interval)
            await stream.send(reply.chunk(token, thinking=thinking))
            reply.token_sent()
        await stream.send(reply.final(plan))
        await stream.finish()

    async def _answer_whole(self, ex: Exchange, reply: _Reply, plan: AnswerPlan) -> None:
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
            await ex.responder.send(200, MALFORMED_LINE, JSON_TYPE)
            return
        await ex.json(200, reply.final(plan, whole=True))

    # -- pull --------------------------------------------------------------------------

    async def _pull(self, ex: Exchange) -> None:
        name = normalize_name(_model_name(ex.body))
        if await self._before_output(ex):
            return
        streamed = ex.body.get("stream", True) is not False
        stream = NdjsonStream(ex.responder, ex.knobs)

        async def emit(line: dict[str, Any], *, first: bool = False) -> None:
            if not first:
                await asyncio.sleep(ex.knobs.pull_interval)
            if streamed:
                await stream.send(line)

        await emit({"status": "pulling manifest"}, first=True)
        for layer in layers_for(name):
            status = {
                "status": f"pulling {layer.short}",
                "digest": layer.digest,
                "total": layer.size,
            }
            await emit(status)  # as in Ollama, the first line of a layer has no "completed"
            done = self.store.downloaded(layer)
            while True:
                # Resumable: start from what an earlier, interrupted pull got, and record
                # progress only once the client was told about it.
                done = min(layer.size, done + ex.knobs.pull_step)
                await emit({**status, "completed": done})
                self.store.set_downloaded(layer, done)
                if done >= layer.size:
                    break
        await emit({"status": "verifying sha256 digest"})
        self.store.add(name)
        await emit({"status": "writing manifest"})
        await emit({"status": "success"})
        if streamed:
            await stream.finish()
        else:
            await ex.json(200, {"status": "success"})


class _Reply:
    """Builds the chunks of one generate/chat response and measures its timing."""

    def __init__(
        self, model: str, chat: bool, started_at: float, load_seconds: float, knobs: Knobs
    ) -> None:
        self.model = model  # echoed as the client wrote it, as Ollama does
        self.chat = chat
        self.started_at = started_at
        self.load_seconds = load_seconds
        self.knobs = knobs
        self.prompt_eval_count = 1
        self.context: list[int] = []
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None

    def token_sent(self) -> None:
        self.last_token_at = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = self.last_token_at

    def _head(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": _now_iso()}

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

    def load_response(self) -> dict[str, Any]:
        body = self._message("") if self.chat else ""
        key = "message" if self.chat else "response"
        return {**self._head(), key: body, "done": True, "done_reason": "load"}

    def final(self, plan: AnswerPlan, *, whole: bool = False) -> dict[str, Any]:
        """The ``done`` object: the last stream line, or with ``whole`` the entire answer."""
        content = "".join(plan.answer) if whole else ""
        thinking = "".join(plan.thinking) if whole else ""
        final = self._head()
        if self.chat:
            final["message"] = self._message(content, thinking)
        else:
            final["response"] = content
            if thinking:
                final["thinking"] = thinking
        final.update(done=True, done_reason=plan.done_reason)
        if not self.chat:
            final["context"] = self.context
        final.update(self._metrics(plan.eval_count))
        return final

    def _metrics(self, eval_count: int) -> dict[str, int]:
        span = 0.0
        if self.first_token_at is not None and self.last_token_at is not None:
            span = self.last_token_at - self.first_token_at
        # Measured from first to last token, plus one interval for producing the first
        # token: tokens/s then comes out as 1/token_interval, and a one-token answer
        # does not divide by 0.
        eval_duration = _ns(span + self.knobs.token_interval)
        load_duration = _ns(self.load_seconds)
        prompt_eval_duration = self.prompt_eval_count * PROMPT_TOKEN_NS
        # The nominal parts can add up to a little more than the wall time measured;
        # keep the total >= its parts, as it is in Ollama.
        parts = load_duration + prompt_eval_duration + eval_duration
        return {
            "total_duration": max(parts, _ns(time.monotonic() - self.started_at)),
            "load_duration": load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": prompt_eval_duration,
            "eval_count": eval_count,
            "eval_duration": eval_duration,
        }


def _field(body: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BadField(f"field {name!r} must be of type {kind.__name__}, not {value!r}"[:200])
    return value


def _model_name(body: Mapping[str, Any]) -> str:
    # Older clients send "name" instead of "model".
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise BadField("model is required")
    return name


def _num_predict(options: Mapping[str, Any]) -> int | None:
    value = options.get("num_predict")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadField(f"option num_predict must be an integer, not {value!r}")
    return int(value)


def _stops(options: Mapping[str, Any]) -> tuple[str, ...]:
    value = options.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise BadField(f"option stop must be a list of strings, not {value!r}")
