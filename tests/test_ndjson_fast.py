"""The NDJSON fast paths (whole-line reads, json's C scanner called directly) give the
same lines, objects and errors as the plain path (`bytes.split` + `json.loads`)."""

from __future__ import annotations

import json

import pytest

from ollama_nb._exceptions import OllamaResponseError
from ollama_nb._ndjson import LineDecoder, loads, parse_line

LINES = [
    b'{"response":" word","done":false}',
    b'{"response":"h\\u00e9llo \xf0\x9f\x8c\x8d","done":false}',
    b' {"leading":"space"}',
    b'{"trailing":"space"} \r',
    b'{"a":1} trailing data',
    b'{"a":',
    b"[1,2]",
    b'"a string"',
    b"",
    b"\xff\xfe",
    b"NaN",
    b'{"nested":{"k":[1,2.5,null,true]}}',
]


def _plain(line: bytes) -> object:
    try:
        return json.loads(line.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError too
        return type(exc).__name__


def _fast(line: bytes) -> object:
    try:
        return loads(line)
    except ValueError as exc:
        return type(exc).__name__


@pytest.mark.parametrize("line", LINES)
def test_fast_decoder_agrees_with_json_loads(line: bytes) -> None:
    fast, plain = _fast(line), _plain(line)
    assert repr(fast) == repr(plain)  # repr: NaN != NaN


def test_whole_line_reads_give_the_lines_split_reads_give() -> None:
    stream = b"".join(line + b"\n" for line in LINES[:4]) + b"\n  \n"
    whole = LineDecoder()
    per_line = [line for data in stream.splitlines(keepends=True) for line in whole.feed(data)]
    split = LineDecoder()
    per_byte = [line for i in range(len(stream)) for line in split.feed(stream[i : i + 1])]
    at_once = LineDecoder().feed(stream)
    assert per_line == per_byte == at_once == LINES[:4]


def test_parse_line_errors_are_unchanged_by_the_fast_path() -> None:
    with pytest.raises(OllamaResponseError, match="not NDJSON"):
        parse_line(b'{"a":1} trailing data')
    assert parse_line(b'{"response":"x"}\r') == {"response": "x"}


CONTEXT = list(range(5000))  # long enough for the cut to apply (> CONTEXT_MIN_LINE bytes)


@pytest.mark.parametrize(
    "final",
    [
        {"model": "m", "done": True, "context": CONTEXT, "eval_count": 3},
        {"model": "m", "done": True, "eval_count": 3, "context": CONTEXT},
        {"context": CONTEXT, "done": True},
    ],
)
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_a_final_chunks_context_is_dropped_unparsed(
    final: dict[str, object], separators: tuple[str, str]
) -> None:
    line = json.dumps(final, separators=separators).encode()
    assert parse_line(line) == {k: v for k, v in final.items() if k != "context"}


def test_context_written_in_the_answer_is_kept() -> None:
    # Inside a JSON string the quotes are escaped, so the text stays as the model wrote it.
    text = 'Send {"context": [1, 2, 3]} and "context":[4] as is. ' * 200
    line = json.dumps({"response": text, "done": False}, separators=(",", ":")).encode()
    assert parse_line(line)["response"] == text
