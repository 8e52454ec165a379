"""Deterministic embeddings: unit-length vectors computed from the text alone.

Each word of the text (lower-cased) adds a fixed pseudo-random direction, drawn from a
hash of the model and the word ("random indexing"), and a text without words gets a
direction from the hash of the whole text. So the same text always gives the same vector,
texts that share words point in similar directions (a similarity search behaves
sensibly), and two models give different vectors. Values are rounded to float32
precision, as Ollama's ``[]float32`` has; the vector is then scaled to length 1, as
Ollama normalises every embedding.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Final

EMBEDDING_LENGTH: Final = 16
_WORD: Final = re.compile(r"\w+")


def _direction(*parts: str) -> list[float]:
    """A fixed pseudo-random direction for `parts`: values in [-1, 1] from sha256."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_LENGTH]]


def embed_text(model: str, text: str, dimensions: int = EMBEDDING_LENGTH) -> list[float]:
    """The vector of `text` for `model`: `dimensions` floats, Euclidean length 1."""
    vector = [0.0] * EMBEDDING_LENGTH
    for word in _WORD.findall(text.lower()):
        for index, value in enumerate(_direction(model, "word", word)):
            vector[index] += value
    if not any(vector):
        vector = _direction(model, "text", text)  # no words: still fixed for this text
    if 0 < dimensions < EMBEDDING_LENGTH:
        vector = vector[:dimensions]  # as Ollama does for "dimensions": cut, then normalise
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [float(f"{v / norm:.8g}") for v in vector]


def token_count(text: str) -> int:
    """Tokens "evaluated" for one input: its words, at least 1."""
    return max(1, len(_WORD.findall(text)))
