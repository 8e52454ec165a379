"""The stand-in's models: built-in and pulled ones, their capabilities, and pull progress.

Built-in (listed newest first, as ``/api/tags`` lists models):

- ``stand-in``: completion
- ``stand-in-think``: completion, thinking
- ``stand-in-vision``: completion, vision
- ``stand-in-embed``: embedding
- ``stand-in-tools``: completion, tools (calls tools from its prompt: ``_tool_calls``)

A pulled model's capabilities follow its name: ``embed`` or ``minilm`` in it makes an
embedding model, ``think`` a thinking one, ``vision`` or ``llava`` a vision one, ``tools``
one that calls tools, anything else completion only. The stand-in's "registry" has every
valid name except those whose model part starts with ``no-such``: pulling one of those
fails after the manifest step, as pulling an unknown model does.

No I/O here. The state is shared between the server's event loop (requests) and the
test thread (``reset()``), so every method takes the lock.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from ._embedding import EMBEDDING_LENGTH
from ._names import ModelName, parse_name

CONTEXT_LENGTH: Final = 4096
FAMILY: Final = "stand-in"
BUILTIN_MODELS: Final = (
    ("stand-in", ("completion",)),
    ("stand-in-think", ("completion", "thinking")),
    ("stand-in-vision", ("completion", "vision")),
    ("stand-in-embed", ("embedding",)),
    ("stand-in-tools", ("completion", "tools")),
)
UNKNOWN_PREFIX: Final = "no-such"  # models the stand-in's registry does not have
# Ollama's message when the registry answers 404 for the manifest.
UNKNOWN_PULL_ERROR: Final = "pull model manifest: file does not exist"
TEMPLATE: Final = "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
LICENSE: Final = "stand-in: not a model, no license\nServed by ollama_nb.testing for tests."


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def capabilities_for(model: str) -> tuple[str, ...]:
    """Capabilities of a pulled model, from its name (see the module docstring)."""
    base = model.lower()
    if "embed" in base or "minilm" in base:
        return ("embedding",)
    capabilities = ["completion"]
    if "think" in base:
        capabilities.append("thinking")
    if "vision" in base or "llava" in base:
        capabilities.append("vision")
    if "tools" in base:
        capabilities.append("tools")
    return tuple(capabilities)


def in_registry(name: ModelName) -> bool:
    return not name.model.lower().startswith(UNKNOWN_PREFIX)


@dataclass(frozen=True)
class Layer:
    """One blob of a model, as /api/pull reports it."""

    digest: str
    size: int

    @property
    def short(self) -> str:
        # Ollama's progress status names a layer by the first 12 hex digits.
        return self.digest.removeprefix("sha256:")[:12]


def layers_for(name: str) -> tuple[Layer, ...]:
    """Two layers with sizes and digests derived from the name: weights, then params."""
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return (
        Layer(_sha256(f"stand-in weights {name}"), 2_000_000 + seed % 1_000_000),
        Layer(_sha256(f"stand-in params {name}"), 400 + seed % 200),
    )


@dataclass(frozen=True)
class StandInModel:
    name: ModelName
    modified_at: datetime
    capabilities: tuple[str, ...]

    @property
    def display(self) -> str:
        """The name as Ollama shows it: ``stand-in:latest``."""
        return self.name.shortest

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def layers(self) -> tuple[Layer, ...]:
        return layers_for(self.display)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def digest(self) -> str:
        return _sha256("stand-in manifest " + self.display).removeprefix("sha256:")

    def details(self, *, listing: bool = False) -> dict[str, Any]:
        details: dict[str, Any] = {
            "parent_model": "",
            "format": "gguf",
            "family": FAMILY,
            "families": [FAMILY],
            "parameter_size": "0B",
            "quantization_level": "none",
        }
        if listing:  # /api/tags adds these; /api/show has them in model_info
            details["context_length"] = CONTEXT_LENGTH
            if self.has("embedding"):
                details["embedding_length"] = EMBEDDING_LENGTH
        return details

    def tags_entry(self) -> dict[str, Any]:
        return {
            "name": self.display,
            "model": self.display,
            "modified_at": self.modified_at.isoformat(),
            "size": self.size,
            "digest": self.digest,
            "details": self.details(listing=True),
            "capabilities": list(self.capabilities),
        }

    def ps_entry(self, expires_at: datetime) -> dict[str, Any]:
        return {
            "name": self.display,
            "model": self.display,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
            "expires_at": expires_at.isoformat(),
            "size_vram": self.size,
            "context_length": CONTEXT_LENGTH,
        }

    def model_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "general.architecture": FAMILY,
            "general.basename": self.name.model,
            "general.parameter_count": 0,
            f"{FAMILY}.context_length": CONTEXT_LENGTH,
        }
        if self.has("embedding"):
            info[f"{FAMILY}.embedding_length"] = EMBEDDING_LENGTH
        return info

    def show(self) -> dict[str, Any]:
        parameters = "temperature                    0"
        return {
            "license": LICENSE,
            "modelfile": (
                "# Ollama stand-in (ollama_nb.testing): not a model\n"
                f"FROM {self.display}\nTEMPLATE {TEMPLATE!r}\nPARAMETER temperature 0\n"
                f"LICENSE {LICENSE!r}\n"
            ),
            "parameters": parameters,
            "template": TEMPLATE,
            "details": self.details(),
            "model_info": self.model_info(),
            "capabilities": list(self.capabilities),
            "modified_at": self.modified_at.isoformat(),
        }


def _builtin_models() -> dict[str, StandInModel]:
    # Fixed dates, a day apart, keep /api/tags identical between runs and in this order.
    newest = datetime(2025, 1, 1, 12, 0).astimezone()
    models = {}
    for age, (name, capabilities) in enumerate(BUILTIN_MODELS):
        parsed = parse_name(name)
        models[parsed.key] = StandInModel(parsed, newest - timedelta(days=age), capabilities)
    return models


@dataclass
class ModelStore:
    """Models known to the stand-in, and the pull progress it remembers."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _models: dict[str, StandInModel] = field(default_factory=dict)
    _downloaded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the built-in models, no partial downloads."""
        with self._lock:
            self._models = _builtin_models()
            self._downloaded.clear()

    def get(self, name: str | ModelName) -> StandInModel | None:
        parsed = parse_name(name) if isinstance(name, str) else name
        with self._lock:
            return self._models.get(parsed.key)

    def all(self) -> list[StandInModel]:
        """Newest first, as Ollama lists them."""
        with self._lock:
            models = list(self._models.values())
        return sorted(models, key=lambda m: m.modified_at, reverse=True)

    def add(self, name: ModelName) -> StandInModel:
        """A pulled model (pulling again refreshes its date, as a new manifest does)."""
        model = StandInModel(name, datetime.now().astimezone(), capabilities_for(name.model))
        with self._lock:
            self._models[name.key] = model
            return model

    def downloaded(self, layer: Layer) -> int:
        """Bytes of the layer already "downloaded" (an interrupted pull resumes here)."""
        with self._lock:
            return self._downloaded.get(layer.digest, 0)

    def set_downloaded(self, layer: Layer, amount: int) -> None:
        with self._lock:
            self._downloaded[layer.digest] = amount
