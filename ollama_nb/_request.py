"""Build one request from what a caller asked for: the magic's cell and the Python API alike.

One settings resolution (cell / keyword > `%config OllamaMagics.*` > environment >
built-in default), the prompt's variables, think, format, options, keep_alive, images,
the JSON payload and the client. Everything is checked before anything is sent: bad
input is an `InvalidRequest` (a ValueError; the magic shows it as a UsageError).

`run` then drives the built request (`_stream.drive`) and raises as the contract says.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cache import (
    Caching,
    cache_file,
    check_mode,
    first_line,
    replayed_result,
    request_key,
    shown_path,
)
from ._checks import check_json_value, check_prompt_text
from ._client import OllamaClient
from ._code import with_code_instruction
from ._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_RETRIES,
    OPENAI_KEY_ENVS,
    Timeouts,
    auth_headers,
    parse_host,
)
from ._context import DEFAULT_CHARS, describe_all, prompt_with_context
from ._exceptions import (
    InvalidRequest,
    OllamaCacheMissError,
    OllamaError,
    OllamaResponseError,
    RequestInterrupted,
)
from ._next_cell import NextInput, WithCode
from ._prompt import PromptVariableError, fill_prompt
from ._protocol import OLLAMA, protocol_for
from ._render import context_line
from ._result import OllamaResult
from ._stream import Request, StopControl, Transcript, View, build_result, drive
from ._tool_loop import converse
from ._tools import DEFAULT_MAX_STEPS, Tool, ToolError
from ._tools import describe_all as describe_callables

if TYPE_CHECKING:
    from ._chat import Conversation
    from ._images import EncodedImage

# Each setting's built-in default, and the environment variable consulted before it.
DEFAULTS: dict[str, Any] = {
    "host": DEFAULT_HOST,
    "model": None,
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "read_timeout": DEFAULT_READ_TIMEOUT,
    "timeout": None,
    "retries": DEFAULT_RETRIES,
    "system": None,
    "variables": True,
    "keep_alive": None,
    "cache": None,  # a JSON Lines file of answers to replay (`_cache`); None/False/"": off
    "cache_mode": "use",
    "api": "auto",  # "ollama", "openai", or by the host's path (`_protocol.speaks_openai`)
}
ENVIRONMENT = {"host": "OLLAMA_HOST", "model": "OLLAMA_MODEL", "cache": "OLLAMA_NB_CACHE",
               "cache_mode": "OLLAMA_NB_CACHE_MODE"}  # fmt: skip
THINK_LEVELS = ("low", "medium", "high", "max")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
# Go's time.ParseDuration, which the server uses: 10m, 1h30m, 1.5h, 500ms, -1m.
_DURATION = re.compile(r"^[+-]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+$")


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "cell option", "%config", "$OLLAMA_HOST", "default", ...


def resolve_settings(
    given: Mapping[str, Any],
    configured: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    given_source: str = "cell option",
) -> dict[str, Setting]:
    """Each effective setting and where it came from: `given` (a cell option or an API
    keyword; None = not given) > `configured` (%config) > environment > default."""
    env = os.environ if environ is None else environ
    settings: dict[str, Setting] = {}
    for name, default in DEFAULTS.items():
        variable = ENVIRONMENT.get(name)
        if given.get(name) is not None:
            setting = Setting(given[name], given_source)
        elif configured.get(name) is not None:
            setting = Setting(configured[name], "%config")
        elif variable and env.get(variable):
            setting = Setting(env[variable], f"${variable}")
            if name == "host":
                try:
                    setting = Setting(parse_host(setting.value), setting.source)
                except ValueError as exc:
                    raise InvalidRequest(f"${variable}: {exc}") from None
        else:
            setting = Setting(default, "default")
        settings[name] = setting
    return settings


def configured_in_shell() -> dict[str, Any]:
    """`%config OllamaMagics.*` of the running IPython where the extension is loaded."""
    if "IPython" not in sys.modules:  # a plain script: never import IPython for this
        return {}
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("OllamaMagics") if shell is not None else None
    return magics.configured() if magics is not None else {}


def make_client(settings: Mapping[str, Setting]) -> OllamaClient:
    host = settings["host"].value
    try:
        protocol = protocol_for(settings["api"].value, host)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    keys = auth_headers() if protocol is OLLAMA else auth_headers(variables=OPENAI_KEY_ENVS)
    return OllamaClient(
        settings["host"].value,
        Timeouts(
            settings["connect_timeout"].value,
            settings["read_timeout"].value,
            settings["timeout"].value,
        ),
        retries=settings["retries"].value,
        headers=keys,
        protocol=protocol,
    )


def check_keep_alive(value: Any) -> str | int | float | None:
    """`--keep-alive`: plain numbers are seconds (sent as JSON numbers), `10m`/`1h` are
    durations (sent as strings), `0` unloads after the request, `-1` keeps it forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"keep_alive takes a duration (10m, 1h, 30s) or seconds, not {value!r}")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    if _NUMBER.match(text):
        number = float(text)
        return int(number) if number.is_integer() else number
    if _DURATION.match(text):
        return text
    raise ValueError(
        f"--keep-alive takes a duration like 10m, 1h, 30s, or seconds (0 unloads now,"
        f" -1 keeps it loaded), not {value!r}"
    )


def check_think(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    raise ValueError(
        f"think takes True, False or a level ({', '.join(THINK_LEVELS)}), not {value!r}"
    )


@dataclass
class Ask:
    """What one request asks for. A setting left None takes its default (`resolve_settings`)."""

    prompt: str
    model: str | None = None
    host: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    timeout: float | None = None
    retries: int | None = None
    system: str | None = None
    variables: bool | None = None
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    images: Sequence[Any] = ()
    image_names: Sequence[str] = ()  # how errors name each image (default `images[i]`)
    stop_on: re.Pattern[str] | None = None
    chat: bool = False
    # --context / context=: name -> value, described before the prompt (`_context`).
    context: Mapping[str, Any] = field(default_factory=dict)
    context_chars: int | None = None  # None: %config OllamaMagics.context_chars, else 4000
    cache: str | os.PathLike[str] | bool | None = None  # False: bypass the cache file
    cache_mode: str | None = None  # "use", "replay" or "refresh"
    code: bool = False  # --code: ask for Python code (the code goes below: `run`)
    api: str | None = None
    # --tools / tools=: the notebook callables the model may call (`_tools`); then the
    # request goes to /api/chat and runs the tool loop (`_tool_loop`).
    tools: Sequence[Any] = ()
    max_steps: int | None = None  # rounds of calls at most (default 8)
    confirm: Callable[[Any], Any] | None = None  # --confirm: asks Run / Skip per call

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}


@dataclass
class Prepared:
    """A request ready to send, and what its caller needs once it has run."""

    request: Request
    settings: dict[str, Setting]
    chat: bool = False
    images: list[EncodedImage] = field(default_factory=list)
    caching: Caching | None = None  # the cache file this request reads and records to
    replayed: OllamaResult | None = None  # found in the cache file: shown, not sent
    code: bool = False
    # Refused before sending (a model without vision or tools): `run` shows the record of
    # the request that was not sent, then raises this.
    refusal: OllamaError | None = None

    @property
    def thumbnails(self) -> list[bytes]:
        return [image.thumbnail for image in self.images]

    @property
    def encoded(self) -> list[str]:
        return [image.data for image in self.images]


async def build(
    ask: Ask,
    *,
    configured: Mapping[str, Any],
    namespace: Mapping[str, Any] | None = None,
    conversation: Conversation | None = None,
    no_model_hint: str = "pass model=..., or set %config OllamaMagics.model / $OLLAMA_MODEL",
    lookup: bool = True,
) -> Prepared:
    """Check everything and build the request; `InvalidRequest` before anything is sent.

    `namespace`: where `{name}` fields of the prompt are looked up (None: no variables).
    `lookup`: look the request up in the cache file (a batch looks up each element
    itself); with cache_mode "replay", a miss raises `OllamaCacheMissError` here.
    """
    settings = resolve_settings(ask.given(), configured)
    prompt = ask.prompt
    if namespace is not None and settings["variables"].value:
        prompt = fill_variables(prompt, namespace)
    attached: dict[str, str] = {}
    if ask.context:
        limit = ask.context_chars or configured.get("context_chars") or DEFAULT_CHARS
        try:
            descriptions = describe_all(ask.context, limit)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}; nothing was sent") from None
        prompt = prompt_with_context(prompt, descriptions)
        attached = {d.name: d.summary for d in descriptions}
    try:
        think = check_think(ask.think)
        keep_alive = check_keep_alive(settings["keep_alive"].value)
        check_prompt_text(prompt)
        check_prompt_text(settings["system"].value or "", "the system prompt")
        check_json_value(ask.format, "--format")
        check_json_value(ask.options, "-o")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    tools = describe_tools(ask.tools, ask.max_steps) if ask.tools else None
    images = encode_images(ask.images, ask.image_names) if ask.images else []
    client = make_client(settings)
    if client.protocol is not OLLAMA and keep_alive is not None:
        if settings["keep_alive"].source in ("cell option", "keyword"):
            raise InvalidRequest(
                "--keep-alive: an OpenAI-compatible server has no counterpart (the server"
                " decides how long a model stays loaded); nothing was sent"
            )
        keep_alive = None  # a %config / default meant for Ollama: not this server's
    model = settings["model"].value or await _no_model(client, no_model_hint)
    refusal: OllamaResponseError | None = None  # the model lacks what the request needs
    try:
        if images:
            await refuse_blind_model(client, model)
        if tools is not None:
            await refuse_toolless_model(client, model)
    except OllamaResponseError as exc:
        refusal = exc
    system = settings["system"].value
    if ask.code:
        system = with_code_instruction(system)
    encoded = [image.data for image in images]
    payload: dict[str, Any] = {"model": model, "stream": True}
    chat = ask.chat or tools is not None
    if ask.chat:
        if conversation is None:
            raise InvalidRequest("chat needs a conversation")
        # Last: `ask` reserves the turn's place in the conversation (a refused request,
        # which is never sent, takes none).
        payload["messages"] = (
            conversation.messages(prompt, system, encoded)
            if refusal
            else conversation.ask(prompt, system, model, encoded)
        )
    elif tools is not None:
        from ._chat import Conversation

        payload["messages"] = Conversation().messages(prompt, system, encoded)
    else:
        payload["prompt"] = prompt
        if system:
            payload["system"] = system
        if encoded:
            payload["images"] = encoded
    if ask.options:
        payload["options"] = ask.options
    if think is not None:
        payload["think"] = think
    if ask.format is not None:
        payload["format"] = ask.format
    if keep_alive is not None:
        payload["keep_alive"] = keep_alive
    if tools is not None:
        payload["tools"] = [tool.spec() for tool in tools.values()]
    request = Request(
        client=client,
        path="/api/chat" if chat else "/api/generate",
        payload=payload,
        model=model,
        prompt=prompt,
        total_timeout=settings["timeout"].value,
        stop_on=ask.stop_on,
        want_json=ask.format is not None,
        context=attached,
        tools=tools,
        max_steps=DEFAULT_MAX_STEPS if ask.max_steps is None else ask.max_steps,
        confirm=ask.confirm,
    )
    caching = plan_caching(settings, request)
    prepared = Prepared(request, settings, ask.chat, images, caching, code=ask.code)
    prepared.refusal = refusal
    if refusal is None and caching is not None and lookup and caching.mode != "refresh":
        try:
            prepared.replayed = look_up(caching, request)
        except OllamaCacheMissError:
            if ask.chat and conversation is not None:
                conversation.turns.pop()  # the turn `ask` reserved: nothing was asked
            raise
    return prepared


def plan_caching(settings: Mapping[str, Setting], request: Request) -> Caching | None:
    """Which cache file the request uses, how, and under which key; None: no cache."""
    setting = settings["cache"]
    if setting.value is None or setting.value is False or setting.value == "":
        return None
    if not isinstance(setting.value, (str, os.PathLike)):
        raise InvalidRequest(
            f"cache takes a file path, False or None, not {setting.value!r} ({setting.source})"
        )
    mode = settings["cache_mode"]
    try:
        check_mode(mode.value, f"cache_mode ({mode.source})")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if "tools" in request.payload:
        return None  # hook for tools: their calls have effects, so they are never replayed
    key = request_key(keyed_path(request), request.payload, request.stop_on)
    try:
        return Caching(cache_file(setting.value), mode.value, key, request.path)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def keyed_path(request: Request) -> str:
    """The API path a cache key covers: the same request to an OpenAI-compatible server is
    another request than to Ollama (its answer is another model's, served another way)."""
    protocol = request.client.protocol
    return request.path if protocol is OLLAMA else f"{protocol.name}:{request.path}"


def look_up(caching: Caching, request: Request) -> OllamaResult | None:
    """The recorded answer, or None; `OllamaCacheMissError` on a miss in "replay" mode."""
    entry = caching.file.get(caching.key)
    if entry is not None:
        caching.file.hits += 1
        return replayed_result(entry, request.client.host, request.want_json)
    caching.file.misses += 1
    if caching.mode == "replay":
        raise cache_miss(caching, request.model, request.prompt)
    return None


def cache_miss(caching: Caching, model: str, prompt: str) -> OllamaCacheMissError:
    line = first_line(prompt)
    return OllamaCacheMissError(
        f"no recorded answer of {model} to {line!r} in {shown_path(caching.file.path)};"
        " cache_mode 'replay' never sends (record it with cache_mode 'use')",
        model,
        prompt,
    )


def fill_variables(template: str, namespace: Mapping[str, Any]) -> str:
    """`{name}` fields filled from the notebook's `namespace` (`_prompt`), for a cell; a
    field that cannot be filled is an InvalidRequest naming it and the cell's ways out."""
    try:
        return fill_prompt(template, namespace)
    except PromptVariableError as exc:
        raise InvalidRequest(f"{exc}, or use --no-vars; nothing was sent") from None


def encode_images(values: Sequence[Any], names: Sequence[str] = ()) -> list[EncodedImage]:
    """Each image encoded; an error names it by `names[i]`, else by `images[i]`."""
    from ._images import encode_image

    return [
        encode_image(value, names[i] if i < len(names) else f"images[{i}]")
        for i, value in enumerate(values)
    ]


def describe_tools(funcs: Sequence[Any], max_steps: int | None) -> dict[str, Tool]:
    """The tools by name; InvalidRequest (one line, naming the callable) when one cannot
    be described."""
    if isinstance(funcs, (str, bytes)) or callable(funcs):
        funcs = [funcs]
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise InvalidRequest(f"max_steps takes a whole number >= 1, not {max_steps!r}")
    try:
        return describe_callables(list(funcs))
    except ToolError as exc:
        raise InvalidRequest(f"{exc}; nothing was sent") from None


async def refuse_toolless_model(client: OllamaClient, model: str) -> None:
    """Where /api/show lists capabilities without `tools`, refuse before sending."""
    from ._capabilities import refuse_incapable

    await refuse_incapable(client, model, "tools", "use tools", "qwen3 or llama3.1")


async def refuse_blind_model(client: OllamaClient, model: str) -> None:
    """Where /api/show lists capabilities without `vision`, refuse before sending."""
    from ._images import refuse_blind_model as refuse

    await refuse(client, model)


async def _no_model(client: OllamaClient, hint: str) -> str:
    """No model anywhere: say so, with the server's models when it answers."""
    try:
        tags = await client.call("GET", "/api/tags")
        names = [m.get("name", "?") for m in tags.get("models", [])]
        have = f"; {client.host} has: {', '.join(names)}" if names else f"; {client.host} has none"
    except OllamaError as exc:
        have = f" (and listing the server's models failed: {exc})"
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise RequestInterrupted from None
    raise InvalidRequest(f"no model given: {hint}{have}")


class _WithAttachments:
    """Passes view calls on; shows what the request carries besides its prompt (the
    `--context` line, the images' thumbnails) under the live header, as the record does,
    and hands the thumbnails to the result before the record is drawn."""

    def __init__(self, view: View, thumbnails: list[bytes], context: str) -> None:
        self._view = view
        self._thumbnails = thumbnails
        self._context = context

    def start(self, model: str) -> None:
        self._view.start(model)
        show_context = getattr(self._view, "show_context", None)
        if self._context and show_context is not None:
            show_context(self._context)
        show_thumbnails = getattr(self._view, "show_thumbnails", None)
        if self._thumbnails and show_thumbnails is not None:
            show_thumbnails(self._thumbnails)

    def update(self, transcript: Transcript) -> None:
        self._view.update(transcript)

    def finish(self, result: OllamaResult) -> None:
        if self._thumbnails:
            result.images = list(self._thumbnails)
        self._view.finish(result)


async def run(
    prepared: Prepared,
    view: View,
    control: StopControl,
    on_result: Callable[[OllamaResult], None],
    interrupted: str | None = None,
    next_input: NextInput | None = None,
) -> OllamaResult:
    """Drive the request; the result goes to `on_result` on every path. An interrupt is
    re-raised as one line (`RequestInterrupted`, saying `interrupted` if given), an error
    as itself. With code asked for, the answer's code goes to `next_input` (if any)."""
    if prepared.request.tools is not None:  # tools run on the thread that owns the cell
        prepared.request.on_caller = getattr(view, "run_on_caller", None)
    attached = context_line(prepared.request)
    if prepared.images or attached:
        view = _WithAttachments(view, prepared.thumbnails, attached)
    if prepared.code:
        view = WithCode(view, next_input)

    def handle(result: OllamaResult) -> None:
        if prepared.images:
            explain_blind_model(result, prepared.request.model)
        if prepared.request.tools is not None:
            explain_toolless_model(result, prepared.request.model)
        on_result(result)

    if prepared.refusal is not None:  # never sent: its record says so, with its status line
        refused = build_result(prepared.request, Transcript(), None, prepared.refusal)
        view.start(prepared.request.model)
        view.finish(refused)
        on_result(refused)
        del view
        raise prepared.refusal
    if prepared.replayed is not None:  # the static record at once: no live view, no request
        view.finish(prepared.replayed)
        handle(prepared.replayed)
        return prepared.replayed
    try:
        consume = converse if prepared.request.tools is not None else None
        result = await drive(prepared.request, view, control, handle, consume)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # The response is closed and the result handed over; one line instead of a
        # traceback through this package, and Run All still stops here.
        raise (RequestInterrupted(interrupted) if interrupted else RequestInterrupted()) from None
    if result.error is not None:
        error = result.error
        del view  # the raised error's traceback keeps this frame, and so the view, alive
        raise error
    if prepared.caching is not None:
        prepared.caching.record(result)
    return result


def explain_toolless_model(result: OllamaResult, model: str) -> None:
    """The server's 400 for tools sent to a model that cannot use them, in one line."""
    error = result.error
    if (
        isinstance(error, OllamaResponseError)
        and error.status_code == 400
        and "does not support tools" in error.message
    ):
        message = f"model {model!r} cannot use tools ({error.message})"
        error.message = message
        error.args = (message,)


def explain_blind_model(result: OllamaResult, model: str) -> None:
    """The server's 400 for images sent to a model without vision, said plainly."""
    error = result.error
    if isinstance(error, OllamaResponseError) and error.status_code == 400:
        message = f"model {model!r} cannot take images ({error.message})"
        error.message = message
        error.args = (message,)
