"""Images for a vision model: what `--image X` and `images=[...]` accept, as base64 files.

Accepted: a path (str or os.PathLike, relative to the working directory), bytes of a
PNG/JPEG/GIF/BMP/WebP file, a PIL image, a matplotlib Figure, a numpy array (H×W, H×W×3, H×W×4;
uint8, or float in 0–1). PIL images of any mode keep their full range: 16-bit (`I;16`) is
scaled to 8 bits, float (`F`) is read like a float array (0–1; 0–255 as Pillow makes it),
premultiplied alpha is undone, other modes become RGB(A). Errors name the image: the
variable (magic) or `images[i]` (API), in one line.

PIL, matplotlib and numpy are never imported unless such a value is passed (recognised
by its type's module, not by importing the package); numpy arrays are written as PNG
here with zlib, so they need no PIL. Each image also gets a thumbnail (≤ `THUMB_HEIGHT`
px high) for the record; without Pillow a small file is its own thumbnail (scaled by the
page) and a large one gets none.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import InvalidRequest

if TYPE_CHECKING:
    from ._client import OllamaClient

MAX_BYTES = 20 * 1024 * 1024
THUMB_HEIGHT = 160
THUMB_FALLBACK_BYTES = 256 * 1024  # without Pillow, a file this small is its own thumbnail
SENDABLE = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
            b"GIF89a": "GIF", b"BM": "BMP"}  # fmt: skip
ACCEPTED = "a path, bytes of an image file, a PIL image, a matplotlib Figure or a numpy array"


class ImageError(InvalidRequest):
    """An image that cannot be sent; raised before anything is sent."""


@dataclass(frozen=True)
class EncodedImage:
    data: str  # base64 of the image file, as the API's `images` takes it
    thumbnail: bytes  # PNG/JPEG bytes at most THUMB_HEIGHT high, or b"" (none)
    label: str  # what it was, for messages


def encode_image(value: Any, name: str = "images") -> EncodedImage:
    """One value → base64 image file + thumbnail; ImageError for anything else, its
    message starting with `name` (the variable, or `images[1]`)."""
    try:
        return _encode(value)
    except ImageError as exc:
        message = str(exc).removeprefix("images: ")
        raise ImageError(f"{name}: {message}") from None
    except Exception as exc:  # Pillow's or matplotlib's own error: one line, not a traceback
        what = type(value).__name__
        mode = getattr(value, "mode", None)
        if isinstance(mode, str):
            what += f" (mode {mode!r})"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageError(f"{name}: cannot make an image file of this {what}: {detail}") from None


def _encode(value: Any) -> EncodedImage:
    if isinstance(value, (str, os.PathLike)):
        return _from_file(_read_path(value), f"file {os.fspath(value)!r}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _from_file(bytes(value), "bytes")
    module = type(value).__module__.split(".")[0]
    if module == "PIL" and hasattr(value, "save"):
        return _from_pil(value)
    if module == "matplotlib" and hasattr(value, "savefig"):
        return _from_figure(value)
    if module == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return _from_array(value)
    raise ImageError(f"images: cannot send a {type(value).__name__}: give {ACCEPTED}")


def _read_path(value: str | os.PathLike[str]) -> bytes:
    path = os.fspath(value)
    where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
    try:
        size = os.stat(path).st_size
        if os.path.isdir(path):
            raise ImageError(f"images: {path!r} is a directory, not an image file")
        _check_size(size, repr(path))
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise ImageError(f"images: no file {path!r}{where}") from None
    except OSError as exc:
        raise ImageError(f"images: cannot read {path!r}: {exc.strerror or exc}") from None


def _check_size(size: int, what: str) -> None:
    if size > MAX_BYTES:
        raise ImageError(
            f"images: {what} is {size / 1e6:.1f} MB; the limit is {MAX_BYTES // (1024 * 1024)} MB"
        )


def image_format(data: bytes) -> str | None:
    """PNG, JPEG, GIF, BMP or WebP (what Ollama's image decoders take), from the header."""
    for magic, name in SENDABLE.items():
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _from_file(data: bytes, label: str) -> EncodedImage:
    _check_size(len(data), label)
    if image_format(data) is None:
        raise ImageError(f"images: {label} is not a PNG, JPEG, GIF, BMP or WebP image")
    return EncodedImage(_b64(data), _thumbnail_of_file(data), label)


def _thumbnail_of_file(data: bytes) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        return data if len(data) <= THUMB_FALLBACK_BYTES else b""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _pil_thumbnail(image)
    except Exception:  # Pillow cannot read it: the server will say so; no thumbnail here
        return b""


KEPT_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # PNG holds these as they are
ALPHA_MODES = {"La": "LA", "RGBa": "RGBA", "PA": "RGBA"}  # premultiplied or palette + alpha


def _from_pil(image: Any, label: str = "PIL image") -> EncodedImage:
    image = _eight_bit(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _encoded(buffer.getvalue(), _pil_thumbnail(image), label)


def _eight_bit(image: Any) -> Any:
    """`image` in a mode PNG holds with 8 bits a channel, its full range kept: Pillow's
    own `convert` clips 16-bit and float values at 255 (all white, or all black)."""
    mode = image.mode
    if mode in KEPT_MODES:
        return image
    if mode in ALPHA_MODES:
        return image.convert(ALPHA_MODES[mode])
    if mode.startswith("I;16"):
        return image.convert("I").point(lambda v: v * (1 / 257) + 0.5).convert("L")
    if mode in ("I", "F"):
        low, high = image.getextrema()
        if mode == "F" and low >= 0 and high <= 1:  # as a float array: 0 to 1
            return image.point(lambda v: v * 255 + 0.5).convert("L")
        if low >= 0 and high <= 255:  # Pillow's own 8-bit values, as convert("I"/"F") makes
            return image.convert("L")
        if mode == "I" and low >= 0 and high <= 65535:  # a 16-bit image read as "I"
            return image.point(lambda v: v * (1 / 257) + 0.5).convert("L")
        held = "float" if mode == "F" else "32-bit integer"
        limits = "0 to 1 (or 0 to 255)" if mode == "F" else "0 to 65535"
        raise ImageError(
            f"images: a {held} PIL image (mode {mode!r}) must hold values from {limits},"
            f" not {low:g} to {high:g}"
        )
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, …: no alpha


def _pil_thumbnail(image: Any) -> bytes:
    small = _eight_bit(image).copy()
    if small.mode not in KEPT_MODES:
        small = small.convert("RGB")
    if small.height > THUMB_HEIGHT:
        width = max(1, round(small.width * THUMB_HEIGHT / small.height))
        small.thumbnail((width, THUMB_HEIGHT))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def _from_figure(figure: Any) -> EncodedImage:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    height_inches = float(figure.get_size_inches()[1]) or 1.0
    small = io.BytesIO()
    figure.savefig(small, format="png", dpi=min(THUMB_HEIGHT / height_inches, figure.dpi))
    return _encoded(buffer.getvalue(), small.getvalue(), "matplotlib Figure")


def _from_array(array: Any) -> EncodedImage:
    shape = tuple(array.shape)
    channels = 1 if len(shape) == 2 else shape[2] if len(shape) == 3 else 0
    if channels not in (1, 3, 4) or 0 in shape[:2]:
        given = "×".join(map(str, shape)) if shape else "a 0-d array (a single value)"
        raise ImageError(f"images: a numpy array must be H×W, H×W×3 or H×W×4, not {given}")
    kind = array.dtype.kind
    if kind == "u" and array.dtype.itemsize == 1:
        pixels = array
    elif kind == "f":
        if array.size and not (float(array.min()) >= 0.0 and float(array.max()) <= 1.0):
            raise ImageError("images: a float array must hold values from 0 to 1")
        pixels = (array * 255.0 + 0.5).astype("uint8")
    else:
        raise ImageError(f"images: a numpy array must be uint8 or float in 0–1, not {array.dtype}")
    step = -(-shape[0] // THUMB_HEIGHT)  # ceil: every step-th row and column
    data = png_bytes(pixels)
    thumbnail = data if step == 1 else png_bytes(pixels[::step, ::step])
    return _encoded(data, thumbnail, "numpy array")


def png_bytes(pixels: Any) -> bytes:
    """A uint8 numpy array (H×W, H×W×3, H×W×4) as a PNG file, with zlib only."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color = {1: 0, 3: 2, 4: 6}[channels]  # grey, RGB, RGBA
    rows = pixels.reshape(height, width * channels).tobytes()
    stride = width * channels
    raw = b"".join(b"\x00" + rows[i * stride : (i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _encoded(data: bytes, thumbnail: bytes, label: str) -> EncodedImage:
    _check_size(len(data), f"the {label}")
    return EncodedImage(_b64(data), thumbnail, label)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def refuse_blind_model(client: OllamaClient, model: str) -> None:
    """Where /api/show lists capabilities without `vision`, refuse before sending, naming
    the local models that can. If /api/show fails, the request itself will tell."""
    from ._capabilities import refuse_incapable

    await refuse_incapable(client, model, "vision", "take images", "llama3.2-vision")


async def vision_models(client: OllamaClient) -> list[str]:
    from ._capabilities import models_with

    return await models_with(client, "vision")
