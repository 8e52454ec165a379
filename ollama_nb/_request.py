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

from ._checks import check_json_value, check_prompt_text
from ._client import OllamaClient
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
from ._exceptions import OllamaError, OllamaResponseError, RequestInterrupted
from ._prompt import PromptVariableError, fill_prompt
from ._protocol import OLLAMA, protocol_for
from ._result import OllamaResult
from ._stream import Request, StopControl, Transcript, View, drive

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
    "api": "auto",  # "ollama", "openai", or by the host's path (`_protocol.speaks_openai`)
}
ENVIRONMENT = {"host": "OLLAMA_HOST", "model": "OLLAMA_MODEL"}
THINK_LEVELS = ("low", "medium", "high", "max")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
# Go's time.ParseDuration, which the server uses: 10m, 1h30m, 1.5h, 500ms, -1m.
_DURATION = re.compile(r"^[+-]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+$")


class InvalidRequest(ValueError):
    """Bad input, found before anything was sent. One line in a notebook."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


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
    stop_on: re.Pattern[str] | None = None
    chat: bool = False
    api: str | None = None

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}


@dataclass
class Prepared:
    """A request ready to send, and what its caller needs once it has run."""

    request: Request
    settings: dict[str, Setting]
    chat: bool = False
    images: list[EncodedImage] = field(default_factory=list)

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
) -> Prepared:
    """Check everything and build the request; `InvalidRequest` before anything is sent.

    `namespace`: where `{name}` fields of the prompt are looked up (None: no variables).
    """
    settings = resolve_settings(ask.given(), configured)
    prompt = ask.prompt
    if namespace is not None and settings["variables"].value:
        prompt = fill_variables(prompt, namespace)
    try:
        think = check_think(ask.think)
        keep_alive = check_keep_alive(settings["keep_alive"].value)
        check_prompt_text(prompt)
        check_prompt_text(settings["system"].value or "", "the system prompt")
        check_json_value(ask.format, "--format")
        check_json_value(ask.options, "-o")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    images = encode_images(ask.images) if ask.images else []
    client = make_client(settings)
    if client.protocol is not OLLAMA and keep_alive is not None:
        if settings["keep_alive"].source in ("cell option", "keyword"):
            raise InvalidRequest(
                "--keep-alive: an OpenAI-compatible server has no counterpart (the server"
                " decides how long a model stays loaded); nothing was sent"
            )
        keep_alive = None  # a %config / default meant for Ollama: not this server's
    model = settings["model"].value or await _no_model(client, no_model_hint)
    if images:
        await refuse_blind_model(client, model)
    system = settings["system"].value
    encoded = [image.data for image in images]
    payload: dict[str, Any] = {"model": model, "stream": True}
    if ask.chat:
        if conversation is None:
            raise InvalidRequest("chat needs a conversation")
        # Last: `ask` reserves the turn's place in the conversation.
        payload["messages"] = conversation.ask(prompt, system, model, encoded)
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
    request = Request(
        client=client,
        path="/api/chat" if ask.chat else "/api/generate",
        payload=payload,
        model=model,
        prompt=prompt,
        total_timeout=settings["timeout"].value,
        stop_on=ask.stop_on,
        want_json=ask.format is not None,
    )
    return Prepared(request, settings, ask.chat, images)


def fill_variables(template: str, namespace: Mapping[str, Any]) -> str:
    """`{name}` fields filled from `namespace` (`_prompt`); an undefined name is an
    InvalidRequest that names it and the two ways out."""
    try:
        return fill_prompt(template, namespace)
    except PromptVariableError as exc:
        raise InvalidRequest(f"{exc}; nothing was sent") from None


def encode_images(values: Sequence[Any]) -> list[EncodedImage]:
    from ._images import encode_image

    return [encode_image(value) for value in values]


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


class _WithThumbnails:
    """Passes view calls on; hands the images' thumbnails to the result before the record
    is drawn, so the record shows them above the answer."""

    def __init__(self, view: View, thumbnails: list[bytes]) -> None:
        self._view = view
        self._thumbnails = thumbnails

    def start(self, model: str) -> None:
        show = getattr(self._view, "show_thumbnails", None)
        self._view.start(model)
        if show is not None:
            show(self._thumbnails)

    def update(self, transcript: Transcript) -> None:
        self._view.update(transcript)

    def finish(self, result: OllamaResult) -> None:
        result.images = list(self._thumbnails)
        self._view.finish(result)


async def run(
    prepared: Prepared,
    view: View,
    control: StopControl,
    on_result: Callable[[OllamaResult], None],
    interrupted: str | None = None,
) -> OllamaResult:
    """Drive the request; the result goes to `on_result` on every path. An interrupt is
    re-raised as one line (`RequestInterrupted`, saying `interrupted` if given), an error
    as itself."""
    if prepared.images:
        view = _WithThumbnails(view, prepared.thumbnails)

    def handle(result: OllamaResult) -> None:
        if prepared.images:
            explain_blind_model(result, prepared.request.model)
        on_result(result)

    try:
        result = await drive(prepared.request, view, control, handle)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # The response is closed and the result handed over; one line instead of a
        # traceback through this package, and Run All still stops here.
        raise (RequestInterrupted(interrupted) if interrupted else RequestInterrupted()) from None
    if result.error is not None:
        error = result.error
        del view  # the raised error's traceback keeps this frame, and so the view, alive
        raise error
    return result


def explain_blind_model(result: OllamaResult, model: str) -> None:
    """The server's 400 for images sent to a model without vision, said plainly."""
    error = result.error
    if isinstance(error, OllamaResponseError) and error.status_code == 400:
        message = f"model {model!r} cannot take images ({error.message})"
        error.message = message
        error.args = (message,)
