"""Model names as Ollama parses them: ``[host/][namespace/]model[:tag]``.

Ollama fills in the defaults (``registry.ollama.ai``, ``library``, ``latest``), checks each
part (``types/model/name.go``: 1-80 characters, 350 for a host; letters, digits, ``_``,
then also ``-``, ``.`` and, in a host, ``:``), and matches names case-insensitively. It
shows a model by its shortest form: ``stand-in:latest``, ``user/model:tag``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_HOST: Final = "registry.ollama.ai"
DEFAULT_NAMESPACE: Final = "library"
DEFAULT_TAG: Final = "latest"
_MISSING: Final = "!MISSING!"  # Ollama's marker for a part that a separator promised


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def valid(self) -> bool:
        parts = (("host", self.host), ("namespace", self.namespace))
        parts += (("model", self.model), ("tag", self.tag))
        return all(_valid_part(kind, text) for kind, text in parts)

    @property
    def key(self) -> str:
        """The identity of the model: the full name, case-folded."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}".lower()

    @property
    def shortest(self) -> str:
        """``DisplayShortest``: default host and namespace left out."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    index = text.rfind(sep)
    if index < 0:
        return text, "", False
    return text[:index] or _MISSING, text[index + 1 :] or _MISSING, True


def parse_name(raw: str) -> ModelName:
    """Ollama's ``ParseName``: the parts of `raw`, with the defaults filled in."""
    text = raw.strip()
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_last(text, ":")
    rest, model, promised = _cut_last(text, "/")
    if not promised:
        return ModelName(DEFAULT_HOST, DEFAULT_NAMESPACE, text, tag or DEFAULT_TAG)
    host_part, namespace, promised = _cut_last(rest, "/")
    if not promised:
        return ModelName(DEFAULT_HOST, host_part, model, tag or DEFAULT_TAG)
    host = host_part.split("://", 1)[-1]
    return ModelName(host, namespace, model, tag or DEFAULT_TAG)


def _valid_part(kind: str, text: str) -> bool:
    if not 1 <= len(text) <= (350 if kind == "host" else 80):
        return False
    for index, char in enumerate(text):
        if char.isascii() and (char.isalnum() or char == "_"):
            continue
        if index == 0:
            return False
        if char == "-" or (char == "." and kind != "namespace") or (char == ":" and kind == "host"):
            continue
        return False
    return True
