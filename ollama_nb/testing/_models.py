"""The stand-in's model store: built-in models, pulled models, pull progress, loaded models.

No I/O here. The state is shared between the server's event loop (requests) and the
test thread (``reset()``), so every method takes the lock.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

BUILTIN_MODELS: Final = ("stand-in:latest", "stand-in-think:latest")
CONTEXT_LENGTH: Final = 4096
KEEP_ALIVE: Final = timedelta(minutes=5)


def normalize_name(name: str) -> str:
    """``stand-in`` → ``stand-in:latest``; a tag after the last ``/`` is kept."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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
    name: str
    modified_at: datetime

    @property
    def can_think(self) -> bool:
        # Built-in "stand-in-think" thinks; so does any pulled model named "...think...".
        return "think" in self.name.split(":", 1)[0]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return layers_for(self.name)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def digest(self) -> str:
        return _sha256("stand-in manifest " + self.name).removeprefix("sha256:")

    @property
    def capabilities(self) -> list[str]:
        return ["completion", "thinking"] if self.can_think else ["completion"]

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "stand-in",
            "family": "stand-in",
            "families": ["stand-in"],
            "parameter_size": "0B",
            "quantization_level": "none",
        }

    def tags_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at.isoformat(),
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def ps_entry(self, expires_at: datetime) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
            "expires_at": expires_at.isoformat(),
            "size_vram": self.size,
            "context_length": CONTEXT_LENGTH,
        }

    def show(self) -> dict[str, Any]:
        template = "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
        return {
            "license": "stand-in: not a model, no license",
            "modelfile": (
                "# Ollama stand-in (ollama_nb.testing): not a model\n"
                f"FROM {self.name}\nTEMPLATE {template!r}\nPARAMETER temperature 0\n"
            ),
            "parameters": "temperature                    0",
            "template": template,
            "details": self.details(),
            "model_info": {
                "general.architecture": "stand-in",
                "general.parameter_count": 0,
                "stand-in.context_length": CONTEXT_LENGTH,
            },
            "capabilities": self.capabilities,
            "modified_at": self.modified_at.isoformat(),
        }


@dataclass
class ModelStore:
    """Models known to the stand-in, and what it remembers between requests."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _models: dict[str, StandInModel] = field(default_factory=dict)
    _last_used: dict[str, datetime] = field(default_factory=dict)
    _downloaded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the built-in models, nothing loaded, no partial downloads."""
        # A fixed date keeps /api/tags identical between runs.
        built = datetime(2025, 1, 1).astimezone()
        with self._lock:
            self._models = {name: StandInModel(name, built) for name in BUILTIN_MODELS}
            self._last_used.clear()
            self._downloaded.clear()

    def get(self, name: str) -> StandInModel | None:
        with self._lock:
            return self._models.get(normalize_name(name))

    def all(self) -> list[StandInModel]:
        with self._lock:
            return list(self._models.values())

    def add(self, name: str) -> StandInModel:
        model = StandInModel(normalize_name(name), datetime.now().astimezone())
        with self._lock:
            return self._models.setdefault(model.name, model)

    def mark_used(self, model: StandInModel) -> None:
        with self._lock:
            self._last_used[model.name] = datetime.now().astimezone()

    def running(self) -> list[tuple[StandInModel, datetime]]:
        """Models used within the keep-alive, with the time each will be unloaded."""
        now = datetime.now().astimezone()
        with self._lock:
            return [
                (self._models[name], used + KEEP_ALIVE)
                for name, used in sorted(self._last_used.items(), key=lambda i: i[1], reverse=True)
                if used + KEEP_ALIVE > now and name in self._models
            ]

    def downloaded(self, layer: Layer) -> int:
        """Bytes of the layer already "downloaded" (an interrupted pull resumes here)."""
        with self._lock:
            return self._downloaded.get(layer.digest, 0)

    def set_downloaded(self, layer: Layer, amount: int) -> None:
        with self._lock:
            self._downloaded[layer.digest] = amount
