"""`OllamaResult`: what one request produced, however it ended."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from ._render import record_html, record_text, replayed_note, status_line

METADATA_KEY = "ollama_nb"  # the record's output metadata: how the answer was made


@dataclass(eq=False)
class OllamaResult:
    """The outcome of one `%%ollama` cell; also stored in `_ollama`.

    `done_reason` is the server's (`stop`, `length`, …) when the model finished, else
    `stopped`, `interrupted`, `timeout` or `error`; `text` always holds what arrived.
    """

    model: str
    text: str = ""
    thinking: str = ""
    done_reason: str | None = None
    stopped: bool = False
    elapsed: float = 0.0
    ttft: float | None = None
    eval_count: int | None = None
    prompt_eval_count: int | None = None
    tokens_per_second: float | None = None
    json: Any = None
    error: BaseException | None = None
    host: str = ""
    chunks: int = 0  # chunks that carried text or thinking
    timeout_kind: str | None = None
    final: dict[str, Any] = field(default_factory=dict, repr=False)
    prompt: str = ""  # the prompt as sent, after variables
    # What was asked for: the request's `options`, `think` and `format` (see `settings_of`).
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    # Thumbnails (PNG/JPEG bytes, ≤ 160 px high) of the images sent; the record shows them.
    images: list[bytes] = field(default_factory=list, repr=False)
    # --context: each value's name and what it was ("DataFrame 1,000×5"); the record's
    # header names them.
    context: dict[str, str] = field(default_factory=dict, repr=False)
    # Replayed from the cache file (`_cache`) instead of asked; when it was recorded (UTC).
    cached: bool = False
    recorded_at: str | None = None
    # --code / code=True: the answer's Python code (None: none), and the record's line
    # saying where it went or why nothing was inserted ("" without --code).
    code: str | None = None
    code_note: str = field(default="", repr=False)
    # --tools: each call the model asked for (`_tools.ToolCall`), and the assistant and
    # tool messages of the rounds run (what --chat keeps in the conversation).
    tool_calls: list[Any] = field(default_factory=list)
    tool_messages: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        """One readable line: model · reason · tokens · tokens/s · elapsed."""
        # None: the server finished without saying why (no done_reason in its final chunk).
        reason = self.done_reason or ("error" if self.error is not None else "done")
        if self.timeout_kind:
            reason = f"{reason} ({self.timeout_kind})"
        tokens = self.eval_count if self.eval_count is not None else self.chunks
        line = status_line(self.model, reason, tokens, self.tokens_per_second, self.elapsed)
        return line + replayed_note(self.recorded_at, self.model) if self.cached else line

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:60] + "…"
        return f"OllamaResult({self.status!r}, text={preview!r})"

    def _repr_html_(self) -> str:
        return record_html(self)

    def record_metadata(self) -> dict[str, Any]:
        """How the answer was made, for the saved notebook; nothing secret (no host, key
        or headers): only what the payload asked for and what the server answered."""
        made = {
            "model": self.model,
            "done_reason": self.done_reason,
            "eval_count": self.eval_count,
            "elapsed": round(self.elapsed, 3),
            "options": dict(self.settings.get("options") or {}),
            "think": self.settings.get("think"),
            "format": self.settings.get("format"),
            "version": package_version(),
        }
        if self.context:
            made["context"] = list(self.context)
        if self.tool_calls:
            made["tool_calls"] = [call.name for call in self.tool_calls]
        if self.cached:
            made.update(replayed=True, recorded=self.recorded_at)
        return {METADATA_KEY: made}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": record_html(self), "text/plain": record_text(self)}

    def record_bundle(self) -> tuple[dict[str, str], dict[str, Any]]:
        """(data, metadata) of the static record that replaces the live view."""
        return self._repr_mimebundle_(), self.record_metadata()


def settings_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The parts of a request body the record's metadata tells (all JSON already)."""
    return {
        "options": payload.get("options") or {},
        "think": payload.get("think"),
        "format": payload.get("format"),
    }


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    try:
        return metadata.version("ollama-nb")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"
