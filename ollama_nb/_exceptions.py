"""The errors a request can end with.

Every failure reaches the user as one of these, never as a raw httpx, h11 or JSON
exception::

    OllamaError                     base class; `.partial_text` keeps what arrived
    ├── OllamaConnectionError       cannot reach the server, or it hung up mid-answer
    ├── OllamaTimeoutError          `.kind` is "connect", "read" or "total"
    ├── OllamaModelNotFoundError    HTTP 404 for the model: `ollama pull NAME`
    ├── OllamaResponseError         HTTP error status, an error line mid-stream, bad data;
    │                               `.status_code` (-1 when it came inside a 200 stream)
    └── OllamaCacheMissError        cache_mode "replay": the answer is not in the cache file
                                    (nothing was sent); `.model`, `.prompt`

Bad input is found before anything is sent: to the Python API it is `InvalidRequest`, a
`ValueError`; in the magic line, IPython's own `UsageError`.
A kernel interrupt or Ctrl-C is re-raised as `RequestInterrupted`, a `KeyboardInterrupt`,
so that Run All stops there.

In a notebook an error shows as one short line: IPython calls `_render_traceback_`
instead of printing a traceback that would only point into this package.
"""

from __future__ import annotations

from typing import Any, Literal

TimeoutKind = Literal["connect", "read", "total"]


class OllamaError(Exception):
    """Base class of every error a request can end with."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Filled in by the stream when the error ends a request that had begun answering.
        self.partial_text = ""

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own pickling calls `cls(*args)`, and `args` holds only the message:
        # `OllamaTimeoutError(message)` would fail without its `kind`. Rebuild the object
        # without `__init__`, then restore every attribute (`kind`, `partial_text`, ...).
        return (_rebuild, (type(self), self.args), self.__dict__)

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self.message}"]


class OllamaConnectionError(OllamaError):
    """The server could not be reached, or closed the connection before the answer ended."""


class OllamaTimeoutError(OllamaError):
    """A connect, read (silence) or total (wall-clock) timeout ended the request."""

    def __init__(self, message: str, kind: TimeoutKind) -> None:
        super().__init__(message)
        self.kind: TimeoutKind = kind


class OllamaResponseError(OllamaError):
    """The server answered with an error status, an error line, or data that is not NDJSON."""

    def __init__(self, message: str, status_code: int = -1) -> None:
        super().__init__(message)
        self.status_code = status_code


class OllamaModelNotFoundError(OllamaError):
    """The server does not have the model (HTTP 404)."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model
        self.status_code = 404


class OllamaCacheMissError(OllamaError):
    """`cache_mode` is "replay" and the cache file has no answer for this request: nothing
    was sent (CI, where no model runs; a changed prompt or setting shows up here)."""

    def __init__(self, message: str, model: str = "", prompt: str = "") -> None:
        super().__init__(message)
        self.model = model
        self.prompt = prompt


class RequestInterrupted(KeyboardInterrupt):
    """A kernel interrupt or Ctrl-C ended the request; the response was closed first.

    Raised by the Python API, `.partial` is what arrived: the `OllamaResult` or
    `OllamaBatch` so far (None if the interrupt came before the request was sent)."""

    partial: Any = None

    def __str__(self) -> str:
        # The Python API's result is returned, not stored in `_ollama`: it says so itself.
        if self.args:
            return str(self.args[0])
        return "the request was interrupted; the text so far is in _ollama.text"

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


class InvalidRequest(ValueError):
    """Bad input, found before anything was sent. One line in a notebook."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def _rebuild(cls: type[OllamaError], args: tuple[Any, ...]) -> OllamaError:
    """An error of class `cls` with `args`, for pickle and copy (attributes come after)."""
    return cls.__new__(cls, *args)
