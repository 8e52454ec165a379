"""Tools (`--tools`, `tools=`): the schema built from a function, the checks of a call,
the result sent back, and the loop against the stand-in's `stand-in-tools` model, in
plain Python (the kernel side is tests/test_tools_kernel.py)."""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import time
from typing import Annotated, Any, Literal, Optional

import ollama
import pytest
from support import SIGINT_THEN_SLEEP

import ollama_nb
from ollama_nb._exceptions import InvalidRequest
from ollama_nb._tools import (
    MAX_RESULT_CHARS,
    ToolCall,
    ToolError,
    check_call,
    describe,
    describe_all,
    encode_result,
    parse_docstring,
    read_calls,
)
from ollama_nb.testing import StandInServer


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def weather(city: str, unit: Unit = Unit.CELSIUS, days: int | None = None) -> str:
    """Tell the weather in a city.

    More text that is not the description.

    Args:
        city: The city's name,
            in English.
        unit (Unit): Degrees to use.
        days: How many days ahead.

    Returns:
        A sentence.
    """
    return f"{city}: sunny ({unit.value}, {days})"


def numpy_style(values: list[float], how: Literal["mean", "max"] = "mean", **extra: Any) -> float:
    """Summarise numbers.

    Parameters
    ----------
    values : list of float
        The numbers.
    how : {"mean", "max"}
        Which summary.

    Returns
    -------
    float
    """
    return max(values) if how == "max" else sum(values) / len(values)


def test_schema_of_a_google_style_function() -> None:
    tool = describe(weather)
    assert tool.spec() == {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Tell the weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name, in English."},
                    "unit": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "description": "Degrees to use.",
                    },
                    "days": {"type": ["integer", "null"], "description": "How many days ahead."},
                },
                "required": ["city"],
            },
        },
    }


def test_schema_of_a_numpy_style_function_with_kwargs_left_out() -> None:
    tool = describe(numpy_style)
    params = tool.parameters
    assert tool.description == "Summarise numbers."
    assert params["properties"] == {
        "values": {"type": "array", "items": {"type": "number"}, "description": "The numbers."},
        "how": {"type": "string", "enum": ["mean", "max"], "description": "Which summary."},
    }
    assert params["required"] == ["values"]
    assert tool.takes_any  # **extra: extra arguments are passed on


def test_types_methods_partials_and_untyped_parameters() -> None:
    class Shop:
        def price(self, item: str, count: int = 1) -> float:
            """The price of some items."""
            return 2.0 * count

    def scaled(x, factor: float, tags: dict[str, int], opt: Optional[list[str]] = None, *a):  # noqa: UP045
        """Scale x."""
        return x * factor

    method = describe(Shop().price)
    assert method.name == "price" and list(method.parameters["properties"]) == ["item", "count"]
    assert method.parameters["required"] == ["item"]
    bound = describe(functools.partial(scaled, factor=2.0))
    props = bound.parameters["properties"]
    assert bound.name == "scaled" and bound.description == "Scale x."
    assert props["x"] == {}  # no hint: any JSON value
    assert props["tags"] == {"type": "object"}
    assert props["opt"] == {"type": ["array", "null"], "items": {"type": "string"}} or props[
        "opt"
    ] == {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
    assert "factor" not in bound.parameters["required"]  # bound by the partial: a default
    assert "a" not in props  # *args left out


@pytest.mark.parametrize(
    ("func", "words"),
    [
        (lambda x: x, ["<lambda>", "def"]),
        (len, ["len", "positional-only"]),
        (42, ["42", "not callable"]),
    ],
)
def test_a_callable_it_cannot_describe_is_one_line_naming_it(func: Any, words: list[str]) -> None:
    with pytest.raises(ToolError) as info:
        describe(func)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_an_unsupported_hint_and_two_tools_of_one_name() -> None:
    def odd(x: complex) -> None:
        """Odd."""

    with pytest.raises(ToolError, match=r"tool odd: parameter 'x': cannot describe type complex"):
        describe(odd)
    with pytest.raises(ToolError, match="two tools are named 'weather'"):
        describe_all([weather, weather])


def test_docstring_parsing() -> None:
    summary, params = parse_docstring("First line\ngoes on.\n\nArgs:\n  a (int): one\n  b: two")
    assert summary == "First line goes on." and params == {"a": "one", "b": "two"}
    assert parse_docstring("") == ("", {})


def test_the_official_client_agrees_on_names_descriptions_and_required() -> None:
    """The same function through `ollama`'s own conversion: what both express agrees
    (the client flattens types to strings, so types are compared where it keeps them)."""

    def add(a: int, b: int = 2) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    theirs = ollama._utils.convert_function_to_tool(add).model_dump(exclude_none=True)
    ours = describe(add).spec()
    assert ours["function"]["name"] == theirs["function"]["name"]
    assert ours["function"]["description"] == theirs["function"]["description"]
    their_params = theirs["function"]["parameters"]
    assert ours["function"]["parameters"]["required"] == [
        r for r in their_params["required"] if r == "a"
    ]
    for name, prop in their_params["properties"].items():
        mine = ours["function"]["parameters"]["properties"][name]
        assert mine["type"] == prop["type"] and mine["description"] == prop["description"]


def test_calls_are_checked_against_the_schema() -> None:
    tools = describe_all([weather])

    def problem(arguments: Any, name: str = "weather") -> str | None:
        (call,) = read_calls([{"function": {"name": name, "arguments": arguments}}])
        return check_call(call, tools)

    assert problem({"city": "Oslo"}) is None
    assert problem('{"city": "Oslo", "days": 3}') is None  # a JSON string is read
    assert (
        problem({"city": "Oslo"}, "forecast") == "unknown tool 'forecast'; the tools are: weather"
    )
    assert problem({}) == "missing required argument: city"
    assert problem({"city": "Oslo", "when": 1}) == "unexpected argument: when"
    assert problem({"city": 3}) == "argument city: expected string, got number 3"
    assert problem({"city": "Oslo", "unit": "kelvin"}) == (
        'argument unit: "kelvin" is not one of "celsius", "fahrenheit"'
    )
    assert problem("{not json") == "arguments are not a JSON object: {not json"
    assert problem({"city": "Oslo", "days": 2.0}) is None  # an integral float is an integer


def test_results_are_json_else_str_and_cut() -> None:
    assert encode_result({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert encode_result("plain text") == "plain text"
    assert encode_result({1, 2}) in ("{1, 2}", "{2, 1}")  # not JSON: str()
    assert encode_result(float("nan")) == "nan"
    long = encode_result("x" * (MAX_RESULT_CHARS + 10))
    assert long.startswith("x" * MAX_RESULT_CHARS) and long.endswith("[… cut: 10 more characters]")


def test_a_tool_message_names_its_tool_and_call() -> None:
    call = ToolCall("add", {"a": 1}, result="3", id="call_x")
    assert call.message() == {
        "role": "tool",
        "content": "3",
        "tool_name": "add",
        "tool_call_id": "call_x",
    }
    failed = ToolCall("add", {}, error="ValueError: no")
    assert failed.message()["content"] == "error: ValueError: no"


# -- the loop, against the stand-in -------------------------------------------------------

calls_made: list[tuple[str, Any]] = []


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    calls_made.append(("add", (a, b)))
    return a + b


def fails(x: str) -> str:
    """Always fails."""
    raise ValueError(f"no {x}")


def big() -> str:
    """A very long text."""
    return "y" * (MAX_RESULT_CHARS * 2)


@pytest.fixture
def tools_server(server: StandInServer) -> StandInServer:
    calls_made.clear()
    return server


def ask(server: StandInServer, prompt: str, **kwargs: Any) -> ollama_nb.OllamaResult:
    kwargs.setdefault("tools", [add, fails, big])
    return ollama_nb.generate(prompt, "stand-in-tools", host=server.url, display=False, **kwargs)


def test_calls_run_in_order_and_results_go_back(tools_server: StandInServer) -> None:
    prompt = "think: first add\ncall: add(a=1, b=2); add(a=1, b=2)\ncall: add(a=10, b=5)"
    result = ask(tools_server, prompt)
    assert calls_made == [("add", (1, 2)), ("add", (1, 2)), ("add", (10, 5))]
    assert result.done_reason == "stop"
    assert result.text == "[stand-in] tool results: add → 3; add → 3; add → 15"
    assert [(c.name, c.arguments, c.result, c.error) for c in result.tool_calls] == [
        ("add", {"a": 1, "b": 2}, "3", None),
        ("add", {"a": 1, "b": 2}, "3", None),
        ("add", {"a": 10, "b": 5}, "15", None),
    ]
    assert all(c.elapsed >= 0 and not c.skipped for c in result.tool_calls)
    # What went over the wire: /api/chat with tools, then the assistant turn (thinking,
    # content and calls together) and one tool message per call, with tool_name.
    requests = [r for r in tools_server.requests if r.path == "/api/chat"]
    assert len(requests) == 3
    first, second = requests[0].body, requests[1].body
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "fails", "big"]
    assert first["messages"] == [{"role": "user", "content": prompt}]
    assistant, *answers = second["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["thinking"] == "first add"
    assert assistant["content"] == ""
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [{"a": 1, "b": 2}] * 2
    assert [(m["role"], m["tool_name"], m["content"]) for m in answers] == [
        ("tool", "add", "3")
    ] * 2
    assert [m["tool_call_id"] for m in answers] == [c["id"] for c in assistant["tool_calls"]]


def test_bad_calls_and_failing_tools_go_back_to_the_model(tools_server: StandInServer) -> None:
    result = ask(
        tools_server,
        "call: add(a=1); add(a=1, b=2, c=3); nope(); add(a='x', b=1); fails(x='coffee'); big()",
    )
    assert calls_made == []  # none of the bad calls ran
    errors = [c.error for c in result.tool_calls]
    assert errors[:5] == [
        "missing required argument: b",
        "unexpected argument: c",
        "unknown tool 'nope'; the tools are: add, fails, big",
        'argument a: expected integer, got string "x"',
        "ValueError: no coffee",
    ]
    assert result.tool_calls[5].error is None
    assert result.tool_calls[5].result.endswith(f"[… cut: {MAX_RESULT_CHARS:,} more characters]")
    assert result.done_reason == "stop" and "fails → error: ValueError: no coffee" in result.text


def test_arguments_as_a_json_string_are_read_and_sent_back_as_an_object(
    tools_server: StandInServer,
) -> None:
    result = ask(tools_server, "call as string: add(a=2, b=3)")
    assert calls_made == [("add", (2, 3))] and result.text.endswith("add → 5")
    sent = tools_server.requests[-1].body["messages"][1]["tool_calls"][0]["function"]
    assert sent["arguments"] == {"a": 2, "b": 3}  # Ollama refuses a string in a message


def test_a_model_that_never_stops_ends_at_max_steps(tools_server: StandInServer) -> None:
    result = ask(tools_server, "Keep adding.\ncall forever: add(a=1, b=1)", max_steps=3)
    assert result.done_reason == "max_steps" and result.error is None
    assert len(calls_made) == 3
    assert (
        result.tool_calls[-1].error
        == "not run: the model asked for more rounds than --max-steps allows"
    )
    assert "max_steps" in result.status
    default = ask(tools_server, "call forever: add(a=1, b=1)")
    assert default.done_reason == "max_steps" and len(calls_made) == 3 + 8


def test_a_model_without_tools_is_refused_before_sending(tools_server: StandInServer) -> None:
    with pytest.raises(ollama_nb.OllamaResponseError) as info:
        ollama_nb.generate("hi", "stand-in", host=tools_server.url, display=False, tools=[add])
    message = str(info.value)
    assert message.startswith("model 'stand-in' cannot use tools (its capabilities: completion)")
    assert "stand-in-tools:latest" in message and "\n" not in message
    assert not [r for r in tools_server.requests if r.path == "/api/chat"]


def test_a_callable_it_cannot_describe_is_an_invalid_request(tools_server: StandInServer) -> None:
    with pytest.raises(InvalidRequest, match=r"^tool <lambda>: .*nothing was sent$"):
        ask(tools_server, "hi", tools=[lambda: 1])
    with pytest.raises(InvalidRequest, match="max_steps takes a whole number"):
        ask(tools_server, "hi", max_steps=0)
    with pytest.raises(InvalidRequest, match="confirm=True needs clicks"):
        ask(tools_server, "hi", confirm=True)
    assert not tools_server.requests


def test_requests_with_tools_are_never_cached(tools_server: StandInServer, tmp_path: Any) -> None:
    cache = tmp_path / "answers.jsonl"
    for _ in range(2):
        ask(tools_server, "call: add(a=1, b=2)", cache=str(cache))
    assert len(calls_made) == 2  # run again: never replayed
    assert not cache.exists() or cache.read_text().count("\n") <= 1


def test_total_timeout_caps_the_whole_loop(tools_server: StandInServer) -> None:
    tools_server.configure(first_chunk_delay=0.2)
    result_error = None
    try:
        ask(tools_server, "call forever: add(a=1, b=1)", timeout=1.0, max_steps=50)
    except ollama_nb.OllamaTimeoutError as exc:
        result_error = exc
    assert result_error is not None and result_error.kind == "total"
    assert 1 <= len(calls_made) < 10
    json.dumps(str(result_error))


def test_the_read_timeout_bounds_each_response(tools_server: StandInServer) -> None:
    # Round 1 is one call and the final line; the answer of round 2 stalls after 3 lines.
    tools_server.configure(stall_after=3)
    with pytest.raises(ollama_nb.OllamaTimeoutError) as info:
        ask(tools_server, "call: add(a=1, b=2)", read_timeout=0.5)
    assert info.value.kind == "read"
    assert calls_made == [("add", (1, 2))]
    assert info.value.partial_text == "[stand-in] tool results: "  # what arrived is kept


def test_an_async_tool_is_awaited(tools_server: StandInServer) -> None:
    async def later(x: int) -> int:
        """Double, later."""
        return 2 * x

    result = asyncio.run(
        ollama_nb.agenerate(
            "call: later(x=21)", "stand-in-tools", host=tools_server.url, display=False, tools=later
        )
    )
    assert result.text == "[stand-in] tool results: later → 42"


def test_chat_replays_tool_rounds_once() -> None:
    """--chat: the rounds that called tools go back as they were sent, and the answer
    without their text (the result's text holds every round's, a blank line apart)."""
    from ollama_nb._chat import Conversation
    from ollama_nb._result import OllamaResult

    steps = [
        {"role": "assistant", "content": "Let me add.", "tool_calls": [{"function": {}}]},
        {"role": "tool", "content": "3", "tool_name": "add"},
    ]
    conversation = Conversation()
    conversation.ask("1+2?", None, "m")
    result = OllamaResult("m", text="Let me add.\n\nIt is 3.", done_reason="stop")
    result.tool_messages = steps
    result.tool_calls = [ToolCall("add", {"a": 1, "b": 2}, result="3")]
    conversation.record("1+2?", result)
    assert conversation.messages("And 2+2?", None) == [
        {"role": "user", "content": "1+2?"},
        *steps,
        {"role": "assistant", "content": "It is 3."},
        {"role": "user", "content": "And 2+2?"},
    ]


def test_annotated_hints_describe_their_parameter() -> None:
    def scale(x: Annotated[float, "The value to scale."], by: Annotated[int, "Factor."] = 2):
        """Scale."""
        return x * by

    props = describe(scale).parameters["properties"]
    assert props == {
        "x": {"type": "number", "description": "The value to scale."},
        "by": {"type": "integer", "description": "Factor."},
    }


def test_a_result_with_tool_calls_pickles_and_copies(tools_server: StandInServer) -> None:
    import copy
    import pickle

    result = ask(tools_server, "call: add(a=1, b=2)")
    for again in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        assert [(c.name, c.arguments, c.result) for c in again.tool_calls] == [
            ("add", {"a": 1, "b": 2}, "3")
        ]
        assert again.tool_messages == result.tool_messages


def test_odd_results_and_none_defaults() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert encode_result(Unprintable()) == (
        "<a Unprintable that str() cannot show: RuntimeError: no>"
    )

    def greet(name: str = None) -> str:  # type: ignore[assignment]  # noqa: RUF013
        """Greet."""
        return f"hi {name}"

    assert describe(greet).parameters["properties"]["name"] == {"type": ["string", "null"]}


class SilentView:
    """A view that shows nothing (tests of the synchronous path's tool queue)."""

    def start(self, _model: object) -> None:
        pass

    def update(self, _transcript: object) -> None:
        pass

    def finish(self, _result: object) -> None:
        pass


def test_an_interrupt_before_a_queued_tool_runs_means_it_never_starts() -> None:
    """The synchronous path runs tools on the calling thread, from a queue. Ctrl-C that
    lands while that thread still shows the call as running (before it takes the tool
    from the queue) cancels the request: the tool must not start after it (it would run
    to its end with nothing left to interrupt it)."""
    import signal

    import pytest

    from ollama_nb._exceptions import RequestInterrupted
    from ollama_nb._sync import run_in_thread

    started: list[str] = []

    class View:
        def start(self, _model: object) -> None:
            pass

        def update(self, _transcript: object) -> None:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while "running" is on the screen

        def finish(self, _result: object) -> None:
            pass

    async def request(queued: object) -> None:
        queued.update(None)  # type: ignore[attr-defined]
        await queued.run_on_caller(lambda: started.append("tool"))  # type: ignore[attr-defined]

    with pytest.raises(RequestInterrupted):
        run_in_thread(request, View())  # type: ignore[arg-type]
    assert started == []


def test_an_interrupt_as_a_queued_tool_starts_raises_in_the_tool() -> None:
    """Ctrl-C that lands once the calling thread has taken the tool from the queue, before
    the tool's own wrapper is in place, must still end the tool: the thread takes SIGINT as
    KeyboardInterrupt from the moment it takes the tool (else the tool runs to its end)."""
    import signal

    import pytest

    from ollama_nb._exceptions import RequestInterrupted
    from ollama_nb._sync import run_in_thread

    went_on: list[str] = []

    def tool() -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the tool starts
        went_on.append("tool")

    async def request(queued: object) -> None:
        await queued.run_on_caller(tool)  # type: ignore[attr-defined]

    with pytest.raises(RequestInterrupted):
        run_in_thread(request, SilentView())  # type: ignore[arg-type]
    assert went_on == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest's, restored


def test_an_interrupt_as_a_call_shows_running_ends_it_before_its_function_starts(
    tools_server: StandInServer,
) -> None:
    """In a kernel, SIGINT's handler (ipykernel's) cancels the cell with a callback the
    loop runs next, i.e. after a function that blocks it. An Interrupt that comes once the
    view shows the call as running, before its function has started, must still end it:
    the function never runs, and the request ends as interrupted at once."""
    import signal

    from ollama_nb._cancel import InterruptedInTool
    from ollama_nb._request import Ask, build
    from ollama_nb._stream import StopControl, drive
    from ollama_nb._tool_loop import converse

    ran: list[float] = []

    def slow(seconds: float) -> str:
        """Wait."""
        ran.append(seconds)
        time.sleep(seconds)
        return "waited"

    class View:
        def start(self, _model: object) -> None:
            pass

        def update(self, transcript: Any) -> None:
            if any(c.state == "running" for c in transcript.calls):
                signal.raise_signal(signal.SIGINT)  # Interrupt (■) as "running" shows

        def finish(self, result: Any) -> None:
            self.result = result

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        # As ipykernel's handler does: the cell is cancelled when the loop next runs.
        signal.signal(signal.SIGINT, lambda *_: loop.call_soon(task.cancel))  # type: ignore[union-attr]
        ask = Ask(prompt="call: slow(seconds=30)", model="stand-in-tools",
                  host=tools_server.url, tools=[slow])  # fmt: skip
        request = (await build(ask, configured={})).request
        await drive(request, view, StopControl(), lambda _r: None, converse)

    view = View()
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(InterruptedInTool):
            asyncio.run(main())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ran == []  # it never started (else it would have run its 30 s)
    assert view.result.done_reason == "interrupted"
    assert [(c.name, c.error) for c in view.result.tool_calls] == [("slow", "interrupted")]


def sigint_then_sleep() -> dict[str, Any]:
    """`support.SIGINT_THEN_SLEEP` run here: its `stubborn` tool and its `slept` list."""
    namespace: dict[str, Any] = {}
    exec(SIGINT_THEN_SLEEP, namespace)
    return namespace


def test_a_sigint_just_before_a_tool_blocks_still_raises_in_it() -> None:
    """The C handler takes such a SIGINT but the blocked call does not return: without the
    nudge the tool sleeps its whole 10 s (and only then raises)."""
    import signal

    from ollama_nb._tool_interrupt import interrupt_raises_here

    tool = sigint_then_sleep()
    with pytest.raises(KeyboardInterrupt), interrupt_raises_here():
        tool["stubborn"](10)
    assert tool["slept"] == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest's, restored
    assert signal.getsignal(signal.SIGURG) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_a_sigint_just_before_a_queued_tool_blocks_ends_it() -> None:
    """The synchronous path (terminal IPython, `%autoawait off`) runs the tool from a
    queue on the calling thread: the same SIGINT ends it there."""
    from ollama_nb._sync import run_in_thread
    from ollama_nb._tools import ToolCall, ToolInterrupted, describe, run_call

    tool = sigint_then_sleep()

    async def request(queued: Any) -> None:
        call = ToolCall(name="stubborn", arguments={"seconds": 10})
        await run_call(call, {"stubborn": describe(tool["stubborn"])}, queued.run_on_caller)

    with pytest.raises(ToolInterrupted):
        run_in_thread(request, SilentView())  # type: ignore[arg-type]
    assert tool["slept"] == []
