"""What the stand-in can tell about an image it received: format and pixel size.

Read from the file headers alone (no imaging library): PNG, JPEG, GIF, BMP and WebP,
the formats Ollama's image decoders take. Anything else is "not an image" to a vision
model, as it is to Ollama's decoder (``image: unknown format``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReceivedImage:
    """One image of a request, decoded from its base64."""

    data: bytes = field(repr=False)
    format: str | None  # "PNG", "JPEG", "GIF", "BMP", "WEBP", or None when unrecognised
    width: int | None
    height: int | None

    @property
    def size(self) -> int:
        """Bytes after base64 decoding."""
        return len(self.data)

    def describe(self) -> str:
        if self.format is None:
            return f"{self.size} bytes of unknown format"
        if self.width is None or self.height is None:
            return self.format
        return f"{self.width}x{self.height} {self.format}"


def inspect_image(data: bytes) -> ReceivedImage:
    """Format and dimensions of `data`, as far as its header tells."""
    for sniff in (_png, _gif, _bmp, _webp, _jpeg):
        found = sniff(data)
        if found is not None:
            name, width, height = found
            return ReceivedImage(data, name, width, height)
    return ReceivedImage(data, None, None, None)


_Found = tuple[str, int | None, int | None]


def _png(data: bytes) -> _Found | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height
    return "PNG", None, None


def _gif(data: bytes) -> _Found | None:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    if len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "GIF", width, height
    return "GIF", None, None


def _bmp(data: bytes) -> _Found | None:
    if not data.startswith(b"BM") or len(data) < 26:
        return None
    width, height = struct.unpack("<ii", data[18:26])
    return "BMP", abs(width), abs(height)  # a negative height means top-down rows


def _webp(data: bytes) -> _Found | None:
    if len(data) < 16 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return "WEBP", width, height
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return "WEBP", width & 0x3FFF, height & 0x3FFF
    return "WEBP", None, None


# Start-of-frame markers carry the dimensions; DHT (C4), JPG (C8) and DAC (CC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> _Found | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            break
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _SOF_MARKERS and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return "JPEG", width, height
        if marker == 0xDA:  # start of scan: no frame header before it
            break
        index += 2 + length
    return "JPEG", None, None


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (70, 130, 180)) -> bytes:
    """A valid PNG of one colour (for tests: any decoder, a real vision model included,
    reads it)."""
    if width < 1 or height < 1:
        raise ValueError("a PNG needs a width and a height of at least 1")

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
