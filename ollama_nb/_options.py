"""The `%%ollama` line: its declaration (which is also the `%%ollama?` help) and parsing.

Parsing is pure: a line in, a validated `CellOptions` out, or a `UsageError` whose
message is short enough to read at a glance. Nothing is sent for a bad line.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from ._checks import compile_pattern
from ._config import check_retries, check_seconds, parse_host
from ._elements import check_parallel
from ._request import Ask, check_keep_alive, check_think

F = TypeVar("F", bound=Callable[..., Any])

_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def declare(func: F) -> F:
    """Apply the cell magic's argument declaration to `func`."""
    decorators = [
        magic_arguments(),
        argument("model", nargs="?", default=None, help="Model name, e.g. llama3.2 or qwen3:8b."),
        argument("--host", help="Server: host, host:port or http(s)://host:port[/path]."),
        argument(
            "--api",
            choices=("ollama", "openai", "auto"),
            help="The server's API: ollama, or openai (an OpenAI-compatible /v1 server:"
            " llama.cpp, vLLM, LM Studio). Default auto: openai when --host ends in /v1.",
        ),
        argument("--connect-timeout", type=float, metavar="S", help="Seconds to connect."),
        argument(
            "--read-timeout",
            type=float,
            metavar="S",
            help="Longest silence allowed, before the first chunk (model load) or between two.",
        ),
        argument(
            "--timeout", type=float, metavar="S", help="Wall-clock cap for the whole request."
        ),
        argument(
            "--retries",
            type=int,
            metavar="N",
            help="Re-tries of a failed connection (never once an answer began).",
        ),
        argument("--system", metavar="TEXT", help="System prompt."),
        argument(
            "--chat",
            action="store_true",
            help="Next turn of the notebook's conversation (%%ollama history; %%ollama reset).",
        ),
        argument(
            "--think",
            action="store_true",
            help="Ask a thinking model to think; the thinking is shown apart, collapsed."
            " Without --think/--no-think/--think-level the server decides (a thinking model"
            " thinks).",
        ),
        argument("--no-think", action="store_true", help="Ask a thinking model not to think."),
        argument(
            "--think-level",
            metavar="LEVEL",
            help="low, medium, high or max: how hard a model that takes a level thinks.",
        ),
        argument(
            "--no-vars",
            action="store_true",
            help="Send the prompt exactly as written: no {name} replacement.",
        ),
        argument(
            "--image",
            action="append",
            default=[],
            metavar="X",
            help="Attach an image (repeatable): a notebook variable holding a PIL image, a"
            " matplotlib Figure, a numpy array, bytes or a path; else X is a file path.",
        ),
        argument(
            "--keep-alive",
            metavar="DUR",
            help="How long the server keeps the model loaded after this request: 10m, 1h,"
            " 300 (seconds), 0 (unload now), -1 (forever).",
        ),
        argument(
            "--format",
            metavar="json|NAME",
            help="Structured output: json, or the name of a JSON-schema dict in the notebook.",
        ),
        argument(
            "-o",
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Model option, repeatable (temperature=0, num_predict=64); VALUE read as JSON"
            " where it parses.",
        ),
        argument(
            "--stop-on",
            metavar="REGEX",
            help="Close the response as soon as the text so far matches REGEX.",
        ),
        argument(
            "--context",
            action="append",
            default=[],
            metavar="NAME",
            help="Describe the notebook's NAME before the prompt (repeatable, or a,b): a"
            " DataFrame's shape, columns and first rows, an array's shape and statistics, a"
            " container's leading items, a function's signature and docstring, else repr().",
        ),
        argument(
            "--tools",
            action="append",
            default=[],
            metavar="F,G",
            help="Let the model call the notebook's functions F, G (repeatable): each call is"
            " shown and run in this kernel, its result sent back, until the model answers.",
        ),
        argument(
            "--max-steps",
            type=int,
            metavar="N",
            help="With --tools: at most N rounds of calls (default 8), then the cell ends"
            " with done_reason max_steps.",
        ),
        argument(
            "--confirm",
            action="store_true",
            help="With --tools: show each call with Run and Skip buttons before it runs.",
        ),
        argument("--out", metavar="NAME", help="Also store the result in variable NAME."),
        # Replay (OllamaMagics.cache / cache_mode): see ollama_nb._cache.
        argument(
            "--no-cache",
            action="store_true",
            help="Neither replay from nor record to the cache file (OllamaMagics.cache).",
        ),
        argument(
            "--refresh",
            action="store_true",
            help="Send even if the cache file has the answer, and record the new one.",
        ),
        argument(
            "--code",
            action="store_true",
            help="Ask for Python code; when the answer finishes, its code goes into a new cell"
            " below, not run (_ollama.code).",
        ),
        argument(
            "--background",
            action="store_true",
            help="Return at once; the answer streams on in this cell's output, with its Stop.",
        ),
        # Batches: run by ollama_nb._cell_batch.
        argument(
            "--each",
            metavar="NAME",
            help="Run the prompt once per element of the notebook's iterable NAME ({item},"
            " {index}); _ollama is then an OllamaBatch.",
        ),
        argument("--parallel", type=int, metavar="N", help="With --each: requests in flight."),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


@dataclass
class CellOptions:
    """The validated options of one cell; None means "not given on the line"."""

    model: str | None = None
    host: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    timeout: float | None = None
    retries: int | None = None
    system: str | None = None
    chat: bool = False
    think: bool | str | None = None  # None: not sent (the server decides)
    variables: bool | None = None  # False with --no-vars; None: the setting decides
    images: list[str] = field(default_factory=list)  # --image: variable names or paths
    keep_alive: str | int | float | None = None
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    stop_on: re.Pattern[str] | None = None
    out: str | None = None
    background: bool = False
    each: str | None = None
    parallel: int | None = None
    context: list[str] = field(default_factory=list)  # --context NAME, in order
    cache: bool | None = None  # False with --no-cache; None: the setting decides
    cache_mode: str | None = None  # "refresh" with --refresh
    code: bool = False
    api: str | None = None
    tools: list[str] = field(default_factory=list)  # --tools NAME, in order
    max_steps: int | None = None
    confirm: bool = False


def parse_line(magic: Callable[..., Any], line: str) -> CellOptions:
    """Parse with the parser `declare` attached to `magic`; any problem is a UsageError."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"%%ollama: cannot read the line: {exc}") from None
    try:
        args = magic.parser.parse_args(argv)  # type: ignore[attr-defined]
    except UsageError as exc:  # argparse's own wording, e.g. "unrecognized arguments: --x"
        raise UsageError(f"%%ollama: {exc}") from None
    try:
        return CellOptions(
            model=args.model,
            host=parse_host(args.host) if args.host is not None else None,
            connect_timeout=check_seconds(
                "--connect-timeout", args.connect_timeout, allow_none=True
            ),
            read_timeout=check_seconds("--read-timeout", args.read_timeout, allow_none=True),
            timeout=check_seconds("--timeout", args.timeout, allow_none=True),
            retries=check_retries(args.retries) if args.retries is not None else None,
            system=args.system,
            chat=args.chat,
            think=_think(args.think, args.no_think, args.think_level),
            variables=False if args.no_vars else None,
            images=list(args.image),
            keep_alive=check_keep_alive(args.keep_alive),
            format=args.format,
            options=parse_model_options(args.option),
            stop_on=_compile(args.stop_on),
            out=_identifier("--out", args.out),
            background=args.background,
            each=_identifier("--each", args.each),
            parallel=_parallel(args.parallel, args.each),
            context=_context_names(args.context, args.each),
            cache=False if args.no_cache else None,
            cache_mode=_refresh(args.refresh, args.no_cache),
            code=_code(args.code, args.each, args.background),
            api=args.api,
            tools=_tool_names(args.tools, args.each),
            max_steps=_max_steps(args.max_steps, args.tools),
            confirm=_confirm(args.confirm, args.tools),
        )
    except ValueError as exc:
        raise UsageError(f"%%ollama: {exc}") from None


def _think(on: bool, off: bool, level: str | None) -> bool | str | None:
    if on + off + (level is not None) > 1:
        raise ValueError("use one of --think, --no-think and --think-level")
    if level is not None:
        return check_think(level)
    return True if on else False if off else None


def _refresh(refresh: bool, no_cache: bool) -> str | None:
    if refresh and no_cache:
        raise ValueError("use one of --refresh and --no-cache")
    return "refresh" if refresh else None


def parse_model_options(pairs: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` pairs; VALUE as JSON where it parses (`0` → 0), else the string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not _OPTION_KEY.match(key):
            raise ValueError(f"-o takes KEY=VALUE (e.g. -o temperature=0), not {pair!r}")
        try:
            # Strict JSON: NaN, Infinity and 1e999 are not numbers a request can carry.
            options[key] = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        except ValueError:
            options[key] = raw
    return options


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    return compile_pattern(pattern, "--stop-on")


def _parallel(value: int | None, each: str | None) -> int | None:
    if value is None:
        return None
    if each is None:
        raise ValueError("--parallel goes with --each NAME (a batch)")
    return check_parallel(value)


def _code(code: bool, each: str | None, background: bool) -> bool:
    # The new cell travels with this cell's own reply (`_next_cell`): a batch's many
    # answers, or an answer that outlives the cell, have none to travel with.
    if code and (each is not None or background):
        other = "--each" if each is not None else "--background"
        raise ValueError(
            f"--code cannot go with {other}: the new cell comes with this cell's"
            " own reply; nothing was sent"
        )
    return code


def _identifier(option: str, name: str | None) -> str | None:
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise ValueError(f"{option} needs a Python variable name, not {name!r}")
    return name


def _context_names(values: list[str], each: str | None) -> list[str]:
    """`--context a --context b,c`: the names in order, each once."""
    if values and each is not None:
        raise ValueError("--context goes with single requests, not with --each")
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            _identifier("--context", name)
            if name not in names:
                names.append(name)
    return names


def _tool_names(values: list[str], each: str | None) -> list[str]:
    """`--tools f --tools g,h`: the names in order, each once."""
    if values and each is not None:
        raise ValueError("--tools goes with single requests, not with --each")
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"--tools needs names of the notebook's functions, not {name!r}")
            if name not in names:
                names.append(name)
    return names


def _max_steps(value: int | None, tools: list[str]) -> int | None:
    if value is None:
        return None
    if not tools:
        raise ValueError("--max-steps goes with --tools")
    if value < 1:
        raise ValueError(f"--max-steps takes a whole number >= 1, not {value}")
    return value


def _confirm(value: bool, tools: list[str]) -> bool:
    if value and not tools:
        raise ValueError("--confirm goes with --tools")
    return value


def resolve_tools(names: list[str], namespace: Mapping[str, Any]) -> list[Any]:
    """`--tools NAME`s looked up in the notebook (`obj.method` too); an undefined one is a
    usage error."""
    found = []
    for name in names:
        head, *attributes = name.split(".")
        if head not in namespace:
            raise UsageError(
                f"%%ollama: --tools {name}: no function {head!r} in the notebook; nothing was sent"
            )
        value = namespace[head]
        for attribute in attributes:
            if not hasattr(value, attribute):
                raise UsageError(f"%%ollama: --tools {name}: no attribute {attribute!r}")
            value = getattr(value, attribute)
        found.append(value)
    return found


def resolve_context(names: list[str], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """`--context NAME`s looked up in the notebook; an undefined one is a usage error."""
    for name in names:
        if name not in namespace:
            raise UsageError(
                f"%%ollama: --context {name}: no variable {name!r} in the notebook;"
                " nothing was sent"
            )
    return {name: namespace[name] for name in names}


def resolve_format(value: str | None, namespace: Mapping[str, Any]) -> str | dict[str, Any] | None:
    """`--format json` passes through; `--format NAME` is a schema dict from the notebook."""
    if value is None or value == "json":
        return value
    if value not in namespace:
        raise UsageError(f"%%ollama: --format {value}: no variable {value!r} in the notebook")
    schema = namespace[value]
    if not isinstance(schema, dict):
        raise UsageError(
            f"%%ollama: --format {value}: expected a JSON-schema dict, got {type(schema).__name__}"
        )
    return schema


def to_ask(options: CellOptions, prompt: str, namespace: Mapping[str, Any]) -> Ask:
    """The request a cell asks for, with `--format NAME` and `--image NAME` looked up."""
    return Ask(
        prompt=prompt,
        model=options.model,
        host=options.host,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        timeout=options.timeout,
        retries=options.retries,
        system=options.system,
        variables=options.variables,
        keep_alive=options.keep_alive,
        think=options.think,
        format=resolve_format(options.format, namespace),
        options=options.options,
        images=[namespace.get(x, x) for x in options.images],
        image_names=list(options.images),
        stop_on=options.stop_on,
        chat=options.chat,
        context=resolve_context(options.context, namespace),
        cache=options.cache,
        cache_mode=options.cache_mode,
        code=options.code,
        api=options.api,
        tools=resolve_tools(options.tools, namespace),
        max_steps=options.max_steps,
    )
