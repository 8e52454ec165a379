"""`%%ollama` and `%ollama`: settings, the request a cell makes, and where it runs.

A `%%ollama` cell runs as an async cell (see `_transform`): the kernel's loop stays free
while the answer streams, which is what lets a Stop click reach it. Where that rewrite
does not apply (terminal IPython, `%autoawait off`) the cell magic itself runs the same
request from a worker thread (`_sync`).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.utils.text import DollarFormatter
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate
from traitlets.config import Config

from ._cache import cache_file, check_mode
from ._cell_batch import run_cell_batch, run_cell_batch_in_thread
from ._chat import Conversation
from ._client import OllamaClient
from ._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_RETRIES,
    OPENAI_KEY_ENVS,
    check_retries,
    check_seconds,
    parse_host,
    redact_url,
)
from ._context import DEFAULT_CHARS as DEFAULT_CONTEXT_CHARS
from ._errors import prompt_namespace, recorder_of
from ._exceptions import InvalidRequest, OllamaResponseError, RequestInterrupted
from ._fix import error_of, fix_prompt, variable_lines
from ._kernel import (
    HINT_KERNEL,
    CellOutput,
    click_delivery,
    clicks_reach_running_cell,
    current_kernel,
)
from ._listing import loaded_table, models_table
from ._next_cell import target_of
from ._openai import no_counterpart
from ._options import CellOptions, declare, parse_line, to_ask
from ._protocol import APIS, OLLAMA, protocol_for
from ._pull import PullView, pull
from ._request import (
    Prepared,
    Setting,
    build,
    check_keep_alive,
    make_client,
    resolve_settings,
    run,
)
from ._result import OllamaResult
from ._show import show_model, unload_model
from ._stats import SessionRequests, stats_table
from ._stream import StopControl, View
from ._sync import run_in_thread
from ._view import TextPullView, TextView, WidgetPullView, WidgetView

HINT_SYNC = "Stop cannot reach a synchronous cell (%autoawait off): use Interrupt (■)"
NOT_SENT = "interrupted before the prompt was sent; _ollama is unchanged"
NO_CONFIRM = "--confirm needs clicks to reach the running cell, which they cannot here"
# `%ollama` commands and how many words follow each (fix: [N] [MODEL] [options]: any).
LINE_COMMANDS = {"models": 0, "ps": 0, "pull": 1, "stats": 0, "history": 0, "reset": 0,
                 "config": 0, "version": 0, "show": 1, "unload": 1, "cache": 0,
                 "fix": -1}  # fmt: skip
SETTINGS = ("host", "model", "connect_timeout", "read_timeout", "timeout", "retries", "system",
            "variables", "keep_alive", "cache", "cache_mode", "api")  # fmt: skip
# Configured like the settings, but not shown by `%ollama config`: read by `_request.build`.
EXTRA_SETTINGS = ("context_chars",)
# `%ollama` commands an OpenAI-compatible server has no counterpart to.
NOT_OPENAI = ("ps", "pull", "show", "unload")


@magics_class
class OllamaMagics(Magics):
    """Talk to local models served by Ollama from a notebook."""

    host = Unicode(
        None, allow_none=True, config=True, help="Ollama server; else $OLLAMA_HOST, else local."
    )
    model = Unicode(None, allow_none=True, config=True, help="Default model; else $OLLAMA_MODEL.")
    connect_timeout = Float(
        DEFAULT_CONNECT_TIMEOUT, config=True, help="Seconds to establish the connection."
    )
    read_timeout = Float(
        DEFAULT_READ_TIMEOUT,
        config=True,
        help="Longest silence allowed: before the first chunk (model load) or between chunks.",
    )
    timeout = Float(
        None, allow_none=True, config=True, help="Wall-clock cap for a whole request, or None."
    )
    retries = Int(
        DEFAULT_RETRIES, config=True, help="Re-tries of a failed connection, with backoff."
    )
    system = Unicode(None, allow_none=True, config=True, help="Default system prompt.")
    variables = Bool(
        True, config=True, help="Replace {name} in prompts with the notebook's values (--no-vars)."
    )
    keep_alive = Unicode(
        None,
        allow_none=True,
        config=True,
        help="How long the server keeps a model loaded after a request: 10m, 1h, 300, 0, -1.",
    )
    context_chars = Int(
        DEFAULT_CONTEXT_CHARS,
        min=100,
        config=True,
        help="Longest description of one --context value, in characters; a longer one is"
        " cut, with a marker saying how much was left out.",
    )
    cache = Unicode(
        None,
        allow_none=True,
        config=True,
        help="JSON Lines file of finished answers, replayed when a request matches one"
        " (relative to the kernel's working directory); else $OLLAMA_NB_CACHE; None or '': off.",
    )
    cache_mode = Unicode(
        "use",
        config=True,
        help="use: replay what the cache has, record the rest; replay: never send (a miss"
        " raises OllamaCacheMissError, for CI); refresh: always send and record."
        " Else $OLLAMA_NB_CACHE_MODE.",
    )
    api = Enum(
        APIS,
        "auto",
        config=True,
        help="The server's API: 'ollama', 'openai' (an OpenAI-compatible /v1 server), or"
        " 'auto': openai when the host URL's path ends in /v1, else ollama.",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self._configured: set[str] = set()
        super().__init__(shell=shell, **kwargs)
        self.results = SessionRequests()  # this session's requests, for `%ollama stats`
        self.conversation = Conversation()  # the notebook's --chat history
        self._background: set[asyncio.Task[Any]] = set()  # keeps running tasks referenced
        self._tickets = 0  # requests started by cells; see `ticket`
        self._latest = 0  # the ticket whose result `_ollama` holds

    # -- settings ---------------------------------------------------------------------

    @validate("connect_timeout", "read_timeout")
    def _check_timeout(self, proposal: Any) -> float:
        return self._checked(lambda: check_seconds(proposal.trait.name, proposal.value))

    @validate("timeout")
    def _check_total(self, proposal: Any) -> float | None:
        return self._checked(lambda: check_seconds("timeout", proposal.value, allow_none=True))

    @validate("retries")
    def _check_retries(self, proposal: Any) -> int:
        return self._checked(lambda: check_retries(proposal.value))

    @validate("keep_alive")
    def _check_keep_alive(self, proposal: Any) -> str | None:
        value = proposal.value
        return None if value is None else self._checked(lambda: str(check_keep_alive(value)))

    @validate("cache_mode")
    def _check_cache_mode(self, proposal: Any) -> str:
        return self._checked(lambda: check_mode(proposal.value))

    @validate("host")
    def _check_host(self, proposal: Any) -> str | None:
        return None if proposal.value is None else self._checked(lambda: parse_host(proposal.value))

    def _load_config(
        self, cfg: Any, section_names: list[str] | None = None, traits: dict[str, Any] | None = None
    ) -> None:
        traits = traits or self.traits(config=True)
        try:
            super()._load_config(cfg, section_names, traits)
            return
        except TraitError:
            pass  # all rolled back: load them one by one below
        # A bad value (IPython's %config keeps even a rejected one in shell.config) is
        # reported and skipped instead of stopping the extension loading.
        mine = self._find_my_config(cfg)
        for name, trait in traits.items():
            if name not in mine:
                continue
            single = Config({type(self).__name__: {name: mine[name]}})
            try:
                super()._load_config(single, section_names, {name: trait})
            except TraitError as exc:
                print(f"{exc} (keeping {name} = {getattr(self, name)!r})", file=sys.stderr)

    @staticmethod
    def _checked(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except ValueError as exc:
            raise TraitError(f"OllamaMagics: {exc}") from None

    @observe(*SETTINGS, *EXTRA_SETTINGS)
    def _remember_configured(self, change: Any) -> None:
        self._configured.add(change["name"])

    def configured(self) -> dict[str, Any]:
        """The settings given with %config (or ipython_config.py)."""
        return {name: getattr(self, name) for name in self._configured}

    def settings(self, cell: CellOptions | None = None) -> dict[str, Setting]:
        """Each effective setting and where it came from (cell > %config > env > default)."""
        given = {name: getattr(cell, name, None) for name in SETTINGS} if cell else {}
        try:
            return resolve_settings(given, self.configured())
        except InvalidRequest as exc:
            raise UsageError(f"%%ollama: {exc}") from None

    # -- the cell magic ---------------------------------------------------------------

    @declare
    @cell_magic("ollama")
    def ollama_cell(self, line: str, cell: str) -> None:
        """Stream a model's answer to the prompt in the cell body.

        {name}, {name.attr} and {name[key]} in the prompt are replaced by the notebook's
        values; any other brace text (code, JSON, {}, {3}) is sent as written, {{name}}
        sends {name}, and --no-vars sends the whole body as written. The result is stored
        in `_ollama` (and in NAME with --out).
        """
        control = StopControl()
        parsed = parse_line(self.ollama_cell, line)
        if parsed.each is not None:  # a batch: see _cell_batch
            run_cell_batch_in_thread(self, line, cell, _sync_view)
            return
        if parsed.confirm:
            raise UsageError(f"%%ollama: {NO_CONFIRM} (a synchronous cell)")
        view: View = _sync_view(WidgetView, TextView, control)

        async def request(queued: View) -> None:
            prepared, options = await self._prepare(line, cell)
            if options.background:
                raise UsageError(
                    "%%ollama: --background needs a notebook kernel with %autoawait on"
                )

            await self._run(prepared, options, queued, control)

        run_in_thread(request, view)

    async def run_cell_async(self, line: str, cell: str) -> None:
        """What a `%%ollama` cell becomes in a kernel: the same request, awaited."""
        line = self._expand(line)
        parsed = parse_line(self.ollama_cell, line)
        if parsed.each is not None:  # a batch: see _cell_batch
            await run_cell_batch(self, line, cell)
            return
        if parsed.confirm and click_delivery() == "none":
            raise UsageError(f"%%ollama: {NO_CONFIRM} ({HINT_KERNEL})")
        request, options = await self._prepare(line, cell)
        output = CellOutput(current_kernel())
        control = StopControl()
        if options.background:
            await self._start_background(request, options, control, output)
            return
        async with clicks_reach_running_cell() as stop_hint:
            view = WidgetView(output, control, stop_hint)
            if options.confirm:
                request.request.confirm = view.confirm
            await self._run(request, options, view, control)

    def _expand(self, line: str) -> str:
        """`$name` and `{expr}` in the line, as IPython expands them for any magic line
        (the async rewrite bypasses IPython's own expansion)."""
        if self.shell is None:
            return line
        try:
            return DollarFormatter().vformat(line, args=[], kwargs=self.shell.user_ns)
        except Exception:
            return line  # IPython, too, leaves a line it cannot expand as it is

    def ticket(self) -> int:
        """A number for a cell's request as it starts, in order."""
        self._tickets += 1
        return self._tickets

    def set_latest(self, value: Any, ticket: int) -> None:
        """`_ollama` holds the result of the latest cell that started: a `--background`
        answer that ends after a newer cell (a batch, another request) leaves that cell's
        result in place (its own `--out NAME` still gets it)."""
        if self.shell is not None and ticket >= self._latest:
            self._latest = ticket
            self.shell.user_ns["_ollama"] = value

    async def _run(
        self, prepared: Prepared, options: CellOptions, view: View, control: StopControl
    ) -> OllamaResult:
        ticket = self.ticket()
        target = target_of(self.shell) if options.code else None
        pending = run(
            prepared,
            view,
            control,
            lambda r: self._store(r, prepared, options, ticket),
            next_input=target,
        )
        del view  # a raised error's traceback keeps this frame: it must not pin the view
        return await pending

    async def _start_background(
        self, request: Prepared, options: CellOptions, control: StopControl, output: CellOutput
    ) -> None:
        """`--background`: the cell returns once a front end has drawn the live view; the
        stream goes on in it, the kernel is idle, so a click reaches any version. A headless
        runner (nbclient, nbval) never draws a view: there the cell ends with the answer,
        so that the saved file holds its record whatever cells follow."""
        view = WidgetView(output, control, stop_hint=None)
        if options.confirm:
            request.request.confirm = view.confirm
        cell = {"waits": True}
        task = asyncio.ensure_future(
            self._run_background(request, options, view, control, output, lambda: cell["waits"])
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        drawn = asyncio.ensure_future(view.drawn.wait())
        try:
            async with clicks_reach_running_cell():
                await asyncio.wait({task, drawn}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # interrupted before the view was drawn
            task.cancel()
            await asyncio.wait({task})
        finally:
            drawn.cancel()
            cell["waits"] = False
        if task.cancelled():  # interrupted before it began: nothing was sent
            raise RequestInterrupted(NOT_SENT)
        failed = task.result() if task.done() else None
        if failed is not None:  # an error or an interrupt: raised in the cell, as in the
            raise failed  # foreground (never from the Task: a KeyboardInterrupt leaves the loop)

    async def _run_background(
        self,
        request: Prepared,
        options: CellOptions,
        view: View,
        control: StopControl,
        output: CellOutput,
        cell_waits: Callable[[], bool] = lambda: False,
    ) -> BaseException | None:
        """Returns what ended the request abnormally while its cell still waits for it."""
        try:
            await self._run(request, options, view, control)
        except BaseException as exc:  # no cell to raise into: say it in the request's own cell
            if cell_waits():
                return exc  # the cell still runs: it raises it
            render = getattr(exc, "_render_traceback_", None)
            text = render()[0] if render else f"{type(exc).__name__}: {exc}"
            output.stream(text + "\n", name="stderr")
            if not isinstance(exc, (Exception, RequestInterrupted)):
                raise
        return None

    async def _prepare(self, line: str, cell: str) -> tuple[Prepared, CellOptions]:
        """Parse and check everything before anything is sent; UsageError on bad input."""
        options = parse_line(self.ollama_cell, line)
        namespace = self.shell.user_ns if self.shell is not None else {}
        try:
            prepared = await build(
                to_ask(options, cell.strip("\n"), namespace),
                configured=self.configured(),
                namespace=prompt_namespace(self.shell, namespace),
                conversation=self.conversation,
                no_model_hint="name one (`%%ollama MODEL`), or set %config OllamaMagics.model"
                " / $OLLAMA_MODEL",
            )
        except ValueError as exc:
            raise UsageError(f"%%ollama: {exc}") from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted while a check waited on the server (the model listing, the
            # vision check): one line, and no word of a text that never came.
            raise RequestInterrupted(NOT_SENT) from None
        return prepared, options

    def _store(
        self, result: OllamaResult, prepared: Prepared, options: CellOptions, ticket: int
    ) -> None:
        self.results.append(result)
        if options.chat:
            self.conversation.record(prepared.request.prompt, result)
        self.set_latest(result, ticket)
        if self.shell is not None and options.out:
            self.shell.user_ns[options.out] = result

    # -- the line magic ---------------------------------------------------------------

    @line_magic("ollama")
    def ollama_line(self, line: str) -> Any:
        """%ollama COMMAND: models | ps | pull NAME | show NAME | unload NAME | stats | history |
        reset | config | version | cache [clear] | fix [N] [MODEL] [options]

        models   the server's models (name, size, parameters, quantization)
        ps       the models loaded now
        pull     pull a model, with progress and a Stop button; pulling again resumes
        show     one model's family, parameters, quantization, context length,
                 capabilities and license
        unload   unload a model from the server's memory now (keep_alive 0)
        stats    this session's requests: outcomes, latency and time-to-first-token
                 percentiles, tokens/s
        history  the --chat conversation; reset clears it
        config   the effective host, model and timeouts, and where each came from
        version  client and server versions
        cache    the cache file (OllamaMagics.cache): path, entries, size, this session's
                 hits and misses; `cache clear` empties it
        fix      explain the error of cell N (default: the most recent one) and put the
                 corrected cell below; sends that cell's source and traceback, and the
                 types and shapes of the variables it uses; %%ollama's options apply
        """
        control = StopControl()
        if _is_fix(line):
            return self._fix_in_thread(line, control)
        view: PullView = _sync_view(WidgetPullView, TextPullView, control)
        return run_in_thread(lambda queued: self._line(line, queued, control), view)

    async def run_line_async(self, line: str) -> Any:
        """What a one-line `%ollama` cell becomes in a kernel, so that pull's Stop works."""
        control = StopControl()
        if _is_fix(line):
            return await self._fix(self._expand(line), control)
        async with clicks_reach_running_cell() as stop_hint:
            view = WidgetPullView(CellOutput(current_kernel()), control, stop_hint)
            return await self._line(self._expand(line), view, control)

    # -- %ollama fix -------------------------------------------------------------------

    def _fix_in_thread(self, line: str, control: StopControl) -> Any:
        view: View = _sync_view(WidgetView, TextView, control)

        async def request(queued: View) -> Any:
            found = await self._prepare_fix(line)
            if isinstance(found, _Text):
                return found
            await self._run(*found, queued, control)
            return None

        return run_in_thread(request, view)

    async def _fix(self, line: str, control: StopControl) -> Any:
        found = await self._prepare_fix(line)
        if isinstance(found, _Text):
            return found  # no error to fix: one line, nothing sent
        async with clicks_reach_running_cell() as stop_hint:
            view = WidgetView(CellOutput(current_kernel()), control, stop_hint)
            await self._run(*found, view, control)
        return None

    async def _prepare_fix(self, line: str) -> tuple[Prepared, CellOptions] | _Text:
        """`fix [N] [MODEL] [options]`: the request, or the line saying there is no error."""
        try:
            argv = shlex.split(line)[1:]
        except ValueError as exc:
            raise UsageError(f"%ollama fix: cannot read the line: {exc}") from None
        count = int(argv.pop(0)) if argv and argv[0].isdigit() else None
        try:
            options = parse_line(self.ollama_cell, shlex.join(argv))
        except UsageError as exc:
            raise UsageError(str(exc).replace("%%ollama:", "%ollama fix:", 1)) from None
        if options.each is not None or options.background:
            other = "--each" if options.each is not None else "--background"
            raise UsageError(
                f"%ollama fix: cannot go with {other}: the corrected cell comes with this"
                " cell's own reply; nothing was sent"
            )
        recorder = recorder_of(self.shell)
        found = error_of(recorder.errors if recorder is not None else {}, count)
        if isinstance(found, str):
            return _Text(found)
        count, error = found
        namespace = self.shell.user_ns if self.shell is not None else {}
        source = recorder.sources.get(count, "") if recorder is not None else ""
        options.code = True
        try:
            # No namespace: the error's text is sent as it is (its code has braces).
            prepared = await build(
                to_ask(options, fix_prompt(error, variable_lines(source, namespace)), namespace),
                configured=self.configured(),
                conversation=self.conversation,
                no_model_hint="name one (`%ollama fix MODEL`), or set %config OllamaMagics.model"
                " / $OLLAMA_MODEL",
            )
        except ValueError as exc:
            raise UsageError(f"%ollama fix: {exc}") from None
        return prepared, options

    async def _line(self, line: str, view: PullView, control: StopControl) -> Any:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%ollama: cannot read the line: {exc}") from None
        command, args = (words[0], words[1:]) if words else ("", [])
        if command not in LINE_COMMANDS:
            known = ", ".join(LINE_COMMANDS)
            raise UsageError(f"%ollama: unknown command {command!r}; try: {known} (%ollama?)")
        if command == "cache" and args in ([], ["clear"]):
            return _cache_table(self.settings(), clear=bool(args))
        if len(args) != LINE_COMMANDS[command]:
            usage = f"%ollama {command} NAME" if LINE_COMMANDS[command] else f"%ollama {command}"
            raise UsageError(f"%ollama: usage: {usage}")
        if command == "config":
            return _config_table(self.settings())
        if command == "stats":
            return stats_table(self.results)
        if command == "history":
            return self.conversation.table()
        if command == "reset":
            turns = len(self.conversation.turns)
            self.conversation.reset()
            return _Text(f"conversation cleared ({turns} turn{'' if turns == 1 else 's'})")
        settings = self.settings()
        client = make_client(settings)
        if client.protocol is not OLLAMA:
            if command in NOT_OPENAI:
                raise UsageError(f"%ollama {command}: {no_counterpart(f'%ollama {command}')}")
            if command == "version":
                return _Text(f"ollama-nb {_our_version()} · OpenAI-compatible server at"
                             f" {client.host} (it tells no version)")  # fmt: skip
        try:
            if command == "version":
                return await _version(client)
            if command == "models":
                return models_table(await client.call("GET", "/api/tags"))
            if command == "ps":
                return loaded_table(await client.call("GET", "/api/ps"))
            if command == "show":
                return await show_model(client, args[0])
            if command == "unload":
                return _Text(await unload_model(client, args[0]))
            outcome = await pull(client, args[0], view, control)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # The response is closed: one line, naming the command (nothing is stored).
            resumes = "; pulling again resumes it" if command == "pull" else ""
            shown = " ".join([command, *args])
            raise RequestInterrupted(f"%ollama {shown} was interrupted{resumes}") from None
        if outcome.outcome not in ("success", "stopped"):
            raise OllamaResponseError(f"pull of {args[0]} ended with: {outcome.outcome}")
        return None


async def _version(client: OllamaClient) -> str:
    server = await client.call("GET", "/api/version")
    server_version = str(server.get("version", "?"))
    line = f"ollama-nb {_our_version()} · server {server_version} at {client.host}"
    if server_version.endswith("-stand-in"):
        line += "\nThis is the ollama_nb stand-in server: its answers are filler, not a model's."
    return _Text(line)


def _is_fix(line: str) -> bool:
    return line.split(maxsplit=1)[:1] == ["fix"]


def _our_version() -> str:
    from importlib.metadata import version

    return version("ollama-nb")


def _sync_view(widget_view: Any, text_view: Any, control: StopControl) -> Any:
    """The view for a synchronous run: widgets in a kernel (whose Stop cannot reach the
    running cell, so it says to use Interrupt), plain text in a terminal."""
    kernel = current_kernel()
    if kernel is None:
        return text_view()
    return widget_view(CellOutput(kernel), control, stop_hint=HINT_SYNC)


def _config_table(settings: dict[str, Setting]) -> str:
    width = max(len(name) for name in settings)
    shown = {n: redact_url(s.value) if n == "host" else s.value for n, s in settings.items()}
    rows = [f"{name:<{width}}  {shown[name]!s:<30}  ({s.source})" for name, s in settings.items()]
    openai = protocol_for(settings["api"].value, settings["host"].value) is not OLLAMA
    variables = OPENAI_KEY_ENVS if openai else ("OLLAMA_API_KEY",)
    found = next((v for v in variables if os.environ.get(v, "").strip()), None)
    key = "set (not shown)" if found else "not set"
    where = ", else ".join(f"${v}" for v in variables) if found is None else f"${found}"
    rows.append(f"{'api key':<{width}}  {key:<30}  ({where})")
    return _Text("\n".join(rows))


def _cache_table(settings: dict[str, Setting], clear: bool = False) -> _Text:
    """`%ollama cache [clear]`."""
    path, mode = settings["cache"], settings["cache_mode"]
    if not path.value:
        return _Text(
            "no cache file: %config OllamaMagics.cache = 'answers.jsonl' (or $OLLAMA_NB_CACHE)"
            " keeps finished answers and replays them"
        )
    try:
        file = cache_file(path.value)
    except ValueError as exc:
        raise UsageError(f"%ollama cache: {exc}") from None
    if clear:
        try:
            entries = file.clear()
        except ValueError as exc:
            raise UsageError(f"%ollama cache clear: {exc}") from None
        return _Text(f"{file.path}: emptied ({entries} entr{'y' if entries == 1 else 'ies'})")
    from ._tables import human_bytes

    rows = [
        ("path", file.path, f"({path.source})"),
        ("mode", mode.value, f"({mode.source})"),
        ("entries", str(len(file)), ""),
        ("size", human_bytes(file.size()), ""),
        ("hits", str(file.hits), "(this session)"),
        ("misses", str(file.misses), "(this session)"),
    ]
    if file.foreign:
        rows.append(("note", "not an ollama_nb cache file: neither read nor written", ""))
    return _Text("\n".join(f"{a:<8}  {b}  {c}".rstrip() for a, b, c in rows))


class _Text(str):
    """Shows as plain lines, not as a quoted string."""

    def __repr__(self) -> str:
        return str(self)


def active() -> OllamaMagics:
    """The OllamaMagics instance registered in the running shell."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("OllamaMagics") if shell else None
    if magics is None:
        raise UsageError("%%ollama: the extension is not loaded (%load_ext ollama_nb)")
    return magics


async def run_cell_async(line: str, cell: str) -> None:
    """Entry point of a rewritten `%%ollama` cell."""
    await active().run_cell_async(line, cell)


async def run_line_async(line: str) -> Any:
    """Entry point of a rewritten one-line `%ollama` cell."""
    return await active().run_line_async(line)
