"""The Ollama endpoints of the stand-in: routing, and the endpoints without a model.

Each handler gets an :class:`Exchange` (the request, its record, the knobs and a
responder) and writes exactly one response, or none when a knob says to close. As with
Ollama's router (gin), a path it does not know is a plain-text ``404 page not found``
and a known path with another method a plain-text ``405 method not allowed``.
Generate, chat and embed are in ``_inference``, pull in ``_pull``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._exchange import Exchange
from ._fields import FieldError, check_struct
from ._forward import Upstream
from ._http import HttpRequest, Responder, ResponseEnded
from ._inference import Inference
from ._knobs import OPTION_PREFIX, KnobError, Knobs, knobs_from_options
from ._models import ModelStore
from ._names import parse_name
from ._openai import OpenAIResponder, is_openai, to_ollama
from ._pull import Pull
from ._record import RequestRecord
from ._sched import Scheduler

VERSION: Final = "0.0.0-stand-in"
ROOT_TEXT: Final = "Ollama is running (stand-in)"

Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """A request's parsed body and effective knobs, with the errors found on the way."""

    body: Any  # parsed JSON, or None
    body_error: str | None  # answered with 400 by endpoints that take a body
    knobs: Knobs
    knob_error: str | None  # answered with 400
    # /v1: the Ollama request the OpenAI body stands for (`_openai`); else the body.
    forwarded: Any = None


def parse_body(raw: bytes, struct: str = "") -> tuple[Any, str | None]:
    """(parsed JSON or None, the 400 message a body-taking endpoint answers with).

    Like Go's ``json.Decoder``: an empty body is ``missing request body`` (io.EOF), data
    after the first JSON value is ignored. Syntax errors are worded after Go's, roughly.
    """
    try:
        text = raw.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        return None, "invalid character in request body: not UTF-8"
    if not text:
        return None, "missing request body"
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return None, "unexpected EOF"
        return None, f"invalid character {text[exc.pos]!r} looking for beginning of value"
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        kind = {"str": "string", "int": "number", "float": "number", "NoneType": "null"}.get(
            kind, kind
        )
        if value is None:
            return {}, None  # null decodes to an empty request, as in Go
        return value, f"json: cannot unmarshal {kind} into Go value of type api.{struct}"
    return value, None


class Endpoints:
    """Routes requests to the endpoint handlers; holds the models and the scheduler."""

    def __init__(
        self, store: ModelStore, scheduler: Scheduler, upstream: Upstream | None = None
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        inference = Inference(store, scheduler, upstream)
        pull = Pull(store)
        # (method, path) -> (handler, the Go struct of its JSON body, or None)
        self._routes: dict[tuple[str, str], tuple[Handler, str | None]] = {
            ("GET", "/"): (self._root, None),
            ("HEAD", "/"): (self._root, None),
            ("GET", "/api/version"): (self._version, None),
            ("HEAD", "/api/version"): (self._version, None),
            ("GET", "/api/tags"): (self._tags, None),
            ("HEAD", "/api/tags"): (self._tags, None),
            ("GET", "/api/ps"): (self._ps, None),
            ("POST", "/api/show"): (self._show, "ShowRequest"),
            ("POST", "/api/generate"): (inference.generate, "GenerateRequest"),
            ("POST", "/api/chat"): (inference.chat, "ChatRequest"),
            ("POST", "/api/embed"): (inference.embed, "EmbedRequest"),
            ("POST", "/api/pull"): (pull.handle, "PullRequest"),
            # OpenAI's API, translated to the handlers above (`_openai`).
            ("POST", "/v1/chat/completions"): (inference.chat, "ChatCompletionRequest"),
            ("GET", "/v1/models"): (self._tags, None),
            ("POST", "/v1/embeddings"): (inference.embed, "EmbeddingRequest"),
        }
        self._paths = {path for _, path in self._routes}

    def prepare(self, request: HttpRequest, base: Knobs) -> Prepared:
        """Parse the body and resolve the knobs, before the request is recorded."""
        route = self._routes.get((request.method, request.path))
        body, body_error = parse_body(request.body, (route[1] or "") if route else "")
        forwarded = body
        if is_openai(request.path) and body_error is None:
            try:
                forwarded = to_ollama(request.path, body)
            except FieldError as exc:
                body_error = exc.message
        knobs, knob_error = base, None
        options = forwarded.get("options") if isinstance(forwarded, dict) else None
        if isinstance(options, Mapping):
            try:
                knobs = base.merged(knobs_from_options(options), prefix=OPTION_PREFIX)
            except KnobError as exc:
                knob_error = str(exc)
        return Prepared(body, body_error, knobs, knob_error, forwarded)

    async def handle(
        self,
        request: HttpRequest,
        prepared: Prepared,
        record: RequestRecord,
        responder: Responder,
    ) -> None:
        body = prepared.forwarded if isinstance(prepared.forwarded, dict) else {}
        if is_openai(request.path):
            responder = OpenAIResponder(responder, request.path, prepared.body)  # type: ignore[assignment]
        exchange = Exchange(request, record, responder, prepared.knobs, body)
        # ResponseEnded: an error line or a dropped connection already ended the response.
        with contextlib.suppress(ResponseEnded):
            await self._dispatch(exchange, prepared.body_error, prepared.knob_error)

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
            if ex.request.path in self._paths:
                await ex.text(405, "405 method not allowed")
            else:
                await ex.text(404, "404 page not found")  # not a missing model
            return
        handler, struct = route
        if struct is not None and body_error is not None:
            await ex.error(400, body_error)
            return
        if knob_error is not None:
            await ex.error(400, knob_error)
            return
        await handler(ex)

    async def _status_knob(self, ex: Exchange) -> bool:
        """The `status` knob: answer that error instead; True when it did."""
        if ex.knobs.status is not None:
            await ex.error(ex.knobs.status, ex.knobs.error)
            return True
        return False

    # -- endpoints without a model -------------------------------------------------------

    async def _root(self, ex: Exchange) -> None:
        # No `status` knob here: the health check keeps answering, so scripts can still
        # tell that the server is up.
        await ex.text(200, ROOT_TEXT)

    async def _version(self, ex: Exchange) -> None:
        if not await self._status_knob(ex):
            await ex.json(200, {"version": VERSION})

    async def _tags(self, ex: Exchange) -> None:
        if not await self._status_knob(ex):
            await ex.json(200, {"models": [m.tags_entry() for m in self.store.all()]})

    async def _ps(self, ex: Exchange) -> None:
        if not await self._status_knob(ex):
            loaded = self.scheduler.loaded()
            await ex.json(200, {"models": [model.ps_entry(at) for model, at in loaded]})

    async def _show(self, ex: Exchange) -> None:
        try:
            check_struct(ex.body, "ShowRequest")
        except FieldError as exc:
            await ex.error(exc.status, exc.message)
            return
        raw = str(ex.body.get("model") or ex.body.get("name") or "")
        if not raw:
            await ex.error(400, "model is required")
            return
        name = parse_name(raw)
        if not name.valid:
            await ex.error(400, "invalid model name")
            return
        model = self.store.get(name)
        if model is None:
            # Ollama names the model here in its shortest form: 'missing:latest'.
            await ex.error(404, f"model '{name.shortest}' not found")
            return
        if not await self._status_knob(ex):
            await ex.json(200, model.show())
