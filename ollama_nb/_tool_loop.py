"""The tool loop: ask, run the calls the answer carries, send the results, ask again.

Protocol-neutral: it works on assembled assistant messages (content, thinking, the raw
tool calls) and on a `stream_one` coroutine that streams one response of the request's
current `messages` into the transcript (`_stream.stream_response`, whichever protocol
the server speaks). `_request.run` hands `converse` to `_stream.drive`, whose race it runs
in, so Stop, the total timeout and an interrupt end it at any step: Stop between two
calls runs no further call; a function that blocks the loop is ended by Interrupt only
(`_tools.run_call` raises `ToolInterrupted`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._stream import Request, StopControl, Transcript, stream_response
from ._tool_interrupt import sigint_noted
from ._tools import DECLINED, ToolCall, run_call

NOT_RUN = "not run: the model asked for more rounds than --max-steps allows"
SUMMED = ("eval_count", "eval_duration", "prompt_eval_count", "prompt_eval_duration")


async def converse(
    request: Request,
    transcript: Transcript,
    control: StopControl,
    refresh: Callable[[], None],
    stream_one: Callable[[Request, Transcript, StopControl], Awaitable[None]] = stream_response,
) -> None:
    """Stream responses and run their calls until an answer without calls, Stop, or
    `request.max_steps` rounds of calls (then `transcript.max_steps_reached`)."""
    tools = request.tools or {}
    messages: list[dict[str, Any]] = request.payload["messages"]
    rounds = 0
    totals: dict[str, int] = {}
    while True:
        transcript.flush()
        text_from, thinking_from = len(transcript.answer), len(transcript.thinking)
        transcript.round_calls = []
        transcript.final = None
        await stream_one(request, transcript, control)
        _add_up(totals, transcript.final)
        transcript.flush()
        calls = transcript.calls[len(transcript.calls) - len(transcript.round_calls) :]
        if not transcript.round_calls or control.requested:
            return
        if rounds >= request.max_steps:
            for call in calls:
                call.error, call.state = NOT_RUN, "failed"
            transcript.max_steps_reached = True
            transcript.calls_changed()
            return
        rounds += 1
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(transcript.answer[text_from:]),
        }
        thinking = "".join(transcript.thinking[thinking_from:])
        if thinking:
            assistant["thinking"] = thinking
        assistant["tool_calls"] = [
            _as_sent(raw, call) for raw, call in zip(transcript.round_calls, calls, strict=True)
        ]
        exchange = [assistant]
        for call in calls:
            if control.requested:
                return
            await _one_call(call, tools, request, transcript, refresh)
            exchange.append(call.message())
        messages.extend(exchange)
        transcript.exchange.extend(exchange)
        if assistant["content"]:
            transcript.new_answer.append("\n\n")  # the next round's text is a new paragraph


async def _one_call(
    call: ToolCall,
    tools: Any,
    request: Request,
    transcript: Transcript,
    refresh: Callable[[], None],
) -> None:
    confirm = request.confirm
    if confirm is not None and call.error is None and call.name in tools:
        call.state = "asking"
        transcript.calls_changed()
        refresh()
        if not await confirm(call):
            call.skipped, call.state, call.result = True, "skipped", DECLINED
            transcript.calls_changed()
            return
    call.state = "running"
    transcript.calls_changed()
    # Shown before a function that may block the loop starts; an Interrupt from the moment
    # it shows ends the call, even one that comes before the function has started.
    with sigint_noted() as note:
        refresh()
        try:
            await run_call(call, tools, request.on_caller, note)
        finally:
            transcript.calls_changed()
    refresh()


def _as_sent(raw: Any, call: ToolCall) -> dict[str, Any]:
    """The call as the assistant turn sends it back: arguments always an object (a model
    may have sent a JSON string, which the server would refuse in a message)."""
    entry = dict(raw) if isinstance(raw, dict) else {}
    function = entry.get("function")
    function = dict(function) if isinstance(function, dict) else {}
    function.update(name=call.name, arguments=call.arguments)
    entry["function"] = function
    return entry


def _add_up(totals: dict[str, int], final: dict[str, Any] | None) -> None:
    """The final chunk counts every round's tokens, not only the last response's."""
    if final is None:
        return
    for key in SUMMED:
        value = final.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            totals[key] = totals.get(key, 0) + value
            final[key] = totals[key]
