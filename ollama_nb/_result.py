"""`OllamaResult`: what one request produced, however it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._render import record_html, record_text, status_line


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
    # Thumbnails (PNG/JPEG bytes, ≤ 160 px high) of the images sent; the record shows them.
    images: list[bytes] = field(default_factory=list, repr=False)

    @property
    def status(self) -> str:
        """One readable line: model · reason · tokens · tokens/s · elapsed."""
        return status_line(self)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:60] + "…"
        return f"OllamaResult({self.status!r}, text={preview!r})"

    def _repr_html_(self) -> str:
        return record_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": record_html(self), "text/plain": record_text(self)}
