"""Results, batches and errors survive `pickle` and `copy.deepcopy` (joblib, `%store`,
multiprocessing): every exception class of the package, found by walking its modules,
results that hold each of them, batches made by a real `map` against the stand-in (kept in
packed columns), and `RequestInterrupted` with its `.partial`."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import ollama_nb
from ollama_nb import OllamaBatch, OllamaResult, RequestInterrupted
from ollama_nb.testing import StandInServer

# A value for each constructor parameter an error class of the package takes.
ARGUMENTS = {
    "message": "it went wrong",
    "kind": "read",
    "status_code": 503,
    "model": "m",
    "prompt": "p",
}
ROUND_TRIPS: dict[str, Callable[[Any], Any]] = {
    "pickle": lambda value: pickle.loads(pickle.dumps(value)),
    "pickle protocol 2": lambda value: pickle.loads(pickle.dumps(value, protocol=2)),
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
}


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined in the package (the stand-in's excepted)."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.iter_modules(ollama_nb.__path__, "ollama_nb."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("ollama_nb."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def _make(cls: type[BaseException]) -> BaseException:
    parameters = inspect.signature(cls.__init__).parameters
    names = [
        name
        for name, p in parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not names:  # BaseException's own __init__: *args
        names = ["message"]
    unknown = [n for n in names if n not in ARGUMENTS]
    assert not unknown, f"{cls.__name__} takes {unknown}: give this test a value for them"
    error = cls(*(ARGUMENTS[name] for name in names))
    if hasattr(error, "partial_text"):
        error.partial_text = "what arrived"  # type: ignore[attr-defined]
    return error


def _state(value: Any) -> Any:
    """What makes `value` itself, for comparing a copy with its original."""
    if isinstance(value, BaseException):
        return (type(value), value.args, str(value), _state(dict(vars(value))))
    if isinstance(value, OllamaResult):
        return tuple((f.name, _state(getattr(value, f.name))) for f in dataclasses.fields(value))
    if isinstance(value, OllamaBatch):
        return (
            value.model,
            value.elapsed,
            repr(value),
            value.counts(),
            [_state(result) for result in value],
        )
    if isinstance(value, dict):
        return {key: _state(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_state(item) for item in value]
    return value


def _same_after_each_round_trip(value: Any) -> None:
    for name, round_trip in ROUND_TRIPS.items():
        copied = round_trip(value)
        assert type(copied) is type(value), name
        assert _state(copied) == _state(value), name


ERRORS = _error_classes()


def test_the_walk_finds_every_error_class() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {
        "OllamaError",
        "OllamaConnectionError",
        "OllamaTimeoutError",
        "OllamaResponseError",
        "OllamaModelNotFoundError",
        "RequestInterrupted",
        "InvalidRequest",
        "PromptVariableError",
        "BatchInputError",
    } <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_each_error_class_round_trips(cls: type[BaseException]) -> None:
    error = _make(cls)
    _same_after_each_round_trip(error)
    copied = pickle.loads(pickle.dumps(error))
    # What the user reads of it is the same too.
    assert str(copied) == str(error)
    render = getattr(error, "_render_traceback_", None)
    if render is not None:
        assert copied._render_traceback_() == render()


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_a_result_holding_each_error_round_trips(cls: type[BaseException]) -> None:
    result = OllamaResult(
        model="stand-in",
        text="partial answer",
        done_reason="timeout" if cls.__name__ == "OllamaTimeoutError" else "error",
        error=_make(cls),
        final={"eval_count": 3},
        settings={"options": {"temperature": 0}, "think": None, "format": None},
        images=[b"\x89PNG..."],
    )
    _same_after_each_round_trip(result)


def test_a_finished_result_round_trips_and_renders_the_same() -> None:
    result = OllamaResult(model="stand-in", text='{"a": 1}', done_reason="stop", json={"a": 1})
    copied = pickle.loads(pickle.dumps(result))
    _same_after_each_round_trip(result)
    assert copied._repr_mimebundle_() == result._repr_mimebundle_()


@pytest.fixture(scope="module")
def batches(standin_server: StandInServer) -> dict[str, OllamaBatch]:
    """Batches as a real `map` makes them (packed columns): finished answers, answers with
    errors and timeouts, and one stopped early (skipped elements)."""
    standin_server.reset()
    url = standin_server.url
    made = {
        "finished": ollama_nb.map(
            "Say {item}.", ["a", "b", "c"], "stand-in", host=url, display=False
        ),
        "with errors": ollama_nb.map(
            "Say {item}.", ["a", "b"], "no-such-model", host=url, display=False
        ),
    }
    standin_server.configure(first_chunk_delay=3)
    made["timed out"] = ollama_nb.map(
        "Say {item}.", [1, 2], "stand-in", host=url, read_timeout=0.3, display=False
    )
    standin_server.reset()
    made["from results"] = OllamaBatch(
        [
            OllamaResult(model="m", text="x", done_reason="stop"),
            OllamaResult(
                model="m",
                done_reason="timeout",
                timeout_kind="total",
                error=ollama_nb.OllamaTimeoutError("total timeout", "total"),
            ),
            OllamaResult(model="m", done_reason="skipped"),
        ],
        model="m",
        elapsed=1.5,
    )
    return made


@pytest.mark.parametrize("name", ["finished", "with errors", "timed out", "from results"])
def test_batches_round_trip(batches: dict[str, OllamaBatch], name: str) -> None:
    batch = batches[name]
    assert len(batch) >= 2
    _same_after_each_round_trip(batch)
    copied = pickle.loads(pickle.dumps(batch))
    assert copied._repr_mimebundle_() == batch._repr_mimebundle_()
    assert copied.texts == batch.texts


def test_the_batches_hold_what_they_say(batches: dict[str, OllamaBatch]) -> None:
    assert batches["finished"].counts() == {"stop": 3}
    assert batches["with errors"].counts() == {"error": 2}
    assert batches["timed out"].counts() == {"timeout": 2}
    assert type(batches["timed out"][0].error).__name__ == "OllamaTimeoutError"


@pytest.mark.parametrize(
    "partial", ["result", "batch", None], ids=["OllamaResult", "OllamaBatch", "none"]
)
def test_request_interrupted_round_trips_with_its_partial(
    batches: dict[str, OllamaBatch], partial: str | None
) -> None:
    error = RequestInterrupted("the request was interrupted; the response was closed")
    if partial == "result":
        error.partial = OllamaResult(model="m", text="so far", done_reason="interrupted")
    elif partial == "batch":
        error.partial = batches["with errors"]
    _same_after_each_round_trip(error)
    copied = copy.deepcopy(error)
    assert copied._render_traceback_() == error._render_traceback_()
    assert isinstance(copied, KeyboardInterrupt)
