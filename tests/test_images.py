"""Images for vision models: each kind of value encoded, round-tripped through the stand-in
(decoded from what the server received), the errors before sending, the thumbnails."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from kernel_driver import KernelDriver
from PIL import Image
from support import assert_one_line_error, run_cell

from ollama_nb._images import MAX_BYTES, THUMB_HEIGHT, ImageError, encode_image, png_bytes
from ollama_nb._request import encode_images
from ollama_nb.testing import StandInServer


def decoded(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    image.load()
    return image


def png_file(width: int, height: int, color: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


# -- encoding, in this process ---------------------------------------------------------------


def test_each_kind_of_value_becomes_a_png_or_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_file(40, 30))
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 0, 255)).save(jpeg, format="JPEG")
    gradient = np.linspace(0, 1, 50 * 60).reshape(50, 60)
    values = {
        "path": (str(path), (40, 30)),
        "pathlib": (path, (40, 30)),
        "bytes": (path.read_bytes(), (40, 30)),
        "jpeg bytes": (jpeg.getvalue(), (20, 10)),
        "PIL": (Image.new("RGBA", (7, 9), (1, 2, 3, 4)), (7, 9)),
        "PIL CMYK": (Image.new("CMYK", (5, 5)), (5, 5)),
        "uint8 grey": (np.zeros((12, 16), dtype=np.uint8), (16, 12)),
        "uint8 rgb": (np.full((12, 16, 3), 255, dtype=np.uint8), (16, 12)),
        "uint8 rgba": (np.zeros((12, 16, 4), dtype=np.uint8), (16, 12)),
        "float grey": (gradient, (60, 50)),
    }
    for name, (value, size) in values.items():
        image = encode_image(value)
        assert decoded(image.data).size == size, name
        assert image.thumbnail, name
    rgb = decoded(encode_image(np.full((2, 3, 3), (10, 20, 30), dtype=np.uint8)).data)
    assert rgb.getpixel((2, 1)) == (10, 20, 30)
    grey = decoded(encode_image(gradient).data)
    assert grey.getpixel((0, 0)) == 0 and grey.getpixel((59, 49)) == 255


def test_a_matplotlib_figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=100)
    figure.add_subplot().plot([1, 3, 2])
    image = encode_image(figure)
    assert decoded(image.data).size == (400, 300)
    assert Image.open(io.BytesIO(image.thumbnail)).height <= THUMB_HEIGHT


def test_thumbnails_are_at_most_160_px_high() -> None:
    for value in [
        png_file(800, 600),
        Image.new("RGB", (300, 1000)),
        np.zeros((1000, 50, 3), "uint8"),
    ]:
        thumb = Image.open(io.BytesIO(encode_image(value).thumbnail))
        assert 0 < thumb.height <= THUMB_HEIGHT
    small = Image.open(io.BytesIO(encode_image(png_file(30, 20)).thumbnail))
    assert small.size == (30, 20)  # never enlarged


def test_our_png_writer_matches_pillow() -> None:
    rng = np.random.default_rng(1)
    for shape in [(5, 7), (5, 7, 3), (5, 7, 4)]:
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        back = np.asarray(Image.open(io.BytesIO(png_bytes(array))))
        assert back.shape == shape and (back == array).all()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("no-such-file.png", "no file 'no-such-file.png' (relative to "),
        (b"TIFF-ish, not an image", "not a PNG, JPEG, GIF, BMP or WebP image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BYTES + 1), "the limit is 20 MB"),
        (3.5, "cannot send a float"),
        ({"a": 1}, "cannot send a dict"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "must be H×W, H×W×3 or H×W×4, not 4×4×2"),
        (np.zeros((0, 4), dtype=np.uint8), "must be H×W"),
        (np.array(0.5), "must be H×W, H×W×3 or H×W×4, not a 0-d array (a single value)"),
        (np.full((4, 4), 2.0), "values from 0 to 1"),
        (np.zeros((4, 4), dtype=np.int64), "uint8 or float"),
    ],
)
def test_what_cannot_be_sent_is_one_clear_error(value: object, words: str) -> None:
    with pytest.raises(ImageError) as caught:
        encode_image(value)
    message = str(caught.value)
    assert words in message and "\n" not in message


def grey_of(value: object) -> tuple[int, int]:
    """The (min, max) grey level of what would be sent."""
    return decoded(encode_image(value).data).convert("L").getextrema()


def test_every_pil_mode_keeps_its_full_range() -> None:
    # 16-bit and float images used to be clipped by Pillow: all white, or all black.
    assert grey_of(Image.new("I;16", (4, 2), 32896)) == (128, 128)
    assert grey_of(Image.new("I;16B", (4, 2), 65535)) == (255, 255)
    assert grey_of(Image.new("I", (4, 2), 257 * 100)) == (100, 100)  # a 16-bit file as "I"
    assert grey_of(Image.new("I", (4, 2), 100)) == (100, 100)  # 8-bit values as "I"
    assert grey_of(Image.new("F", (4, 2), 0.5)) == (128, 128)  # 0-1, as float arrays
    assert grey_of(Image.new("F", (4, 2), 200.0)) == (200, 200)  # L.convert("F")
    ramp = Image.frombytes("I;16", (256, 1), np.arange(0, 65536, 256, "<u2").tobytes())
    assert grey_of(ramp) == (0, 254)
    floats = Image.fromarray(np.linspace(0, 1, 64, dtype="float32").reshape(8, 8), "F")
    assert grey_of(floats) == (0, 255)
    # Premultiplied alpha, palette with alpha, CMYK, LAB: colours and alpha kept.
    assert decoded(encode_image(Image.new("La", (2, 2), (100, 128))).data).mode == "LA"
    rgba = decoded(encode_image(Image.new("RGBa", (2, 2), (10, 20, 30, 255))).data)
    assert rgba.getpixel((0, 0)) == (10, 20, 30, 255)
    assert decoded(encode_image(Image.new("PA", (2, 2))).data).mode == "RGBA"
    cmyk = decoded(encode_image(Image.new("CMYK", (2, 2), (0, 255, 0, 0))).data)
    assert cmyk.getpixel((0, 0)) == (255, 0, 255)
    assert decoded(encode_image(Image.new("LAB", (2, 2))).data).mode == "RGB"


def test_thumbnails_of_16_bit_files_keep_their_range(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.new("I;16", (4, 2), 32896).save(path)
    thumb = Image.open(io.BytesIO(encode_image(path).thumbnail))
    assert thumb.convert("L").getextrema() == (128, 128)


def test_an_image_error_names_the_image_in_one_line() -> None:
    with pytest.raises(ImageError) as caught:
        encode_image(np.full((4, 4), 2.0), "scan_bad")
    assert str(caught.value) == "scan_bad: a float array must hold values from 0 to 1"
    with pytest.raises(ImageError, match=r"^images\[1\]: cannot send a float"):
        encode_images([np.zeros((2, 2), "uint8"), 3.5])


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (Image.new("F", (2, 2), -3.0), "mode 'F') must hold values from 0 to 1"),
        (Image.new("I", (2, 2), 70000), "mode 'I') must hold values from 0 to 65535"),
        ("zero-height figure", "cannot make an image file of this Figure"),
    ],
)
def test_what_pillow_or_matplotlib_refuse_is_one_clear_error(value: object, words: str) -> None:
    if value == "zero-height figure":
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        value = Figure(figsize=(2, 0))
    with pytest.raises(ImageError) as caught:
        encode_image(value, "pic")
    message = str(caught.value)
    assert message.startswith("pic: ") and words in message and "\n" not in message


def test_a_directory_and_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        encode_image(tmp_path)
    locked = tmp_path / "locked.png"
    locked.write_bytes(png_file(2, 2))
    locked.chmod(0)
    try:
        if locked.open("rb"):  # root reads it anyway: nothing to test then
            pytest.skip("running as root: a mode-0 file is still readable")
    except PermissionError:
        with pytest.raises(ImageError, match="cannot read"):
            encode_image(locked)
    finally:
        locked.chmod(0o644)


# -- through the magic and the API, in a kernel ----------------------------------------------

MAKE_IMAGES = """
import io, pathlib
import numpy as np
from PIL import Image
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
Image.new("RGB", (40, 30), (200, 30, 40)).save("red.png")
img_path = pathlib.Path("red.png")
img_bytes = img_path.read_bytes()
img_pil = Image.new("RGB", (21, 13), (0, 128, 0))
img_fig = Figure(figsize=(2, 1), dpi=50)
img_fig.add_subplot().plot([0, 1])
img_fig_flat = Figure(figsize=(2, 0))
img_u8 = np.full((6, 8, 3), (1, 2, 3), dtype=np.uint8)
img_float = np.linspace(0, 1, 6 * 8).reshape(6, 8)
"""


@pytest.fixture
def images_kernel(kernel: KernelDriver) -> KernelDriver:
    kernel.ok(MAKE_IMAGES)
    return kernel


def test_each_kind_round_trips_through_the_magic(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    kernel = images_kernel
    expected = {
        "red.png": (40, 30),
        "img_path": (40, 30),
        "img_bytes": (40, 30),
        "img_pil": (21, 13),
        "img_fig": (100, 50),
        "img_u8": (8, 6),
        "img_float": (8, 6),
    }
    for name, size in expected.items():
        cell = run_cell(kernel, f"stand-in-vision --image {name}", "What is this?")
        assert cell.status == "ok", (name, cell.error_text())
        (data,) = server.last.body["images"]
        assert decoded(data).size == size, name
        (seen,) = server.last.images  # what the stand-in itself decoded
        assert (seen.width, seen.height, seen.format) == (*size, "PNG"), name
    assert decoded(server.last.body["images"][0]).getpixel((0, 0)) == 0
    # Several images, in order.
    run_cell(kernel, "stand-in-vision --image img_u8 --image red.png", "Compare.")
    sizes = [decoded(d).size for d in server.last.body["images"]]
    assert sizes == [(8, 6), (40, 30)]


def test_the_record_shows_thumbnails_above_the_answer(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(images_kernel, "stand-in-vision --image img_pil --image img_fig", "Hi.")
    assert cell.status == "ok", cell.error_text()
    (record,) = cell.records()
    html = record["text/html"]
    thumbs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(thumbs) == 2
    assert html.index("<img") < html.index("ollama-nb-answer")
    for data in thumbs:
        assert decoded(data).height <= THUMB_HEIGHT
    assert "[2 images sent]" in record["text/plain"]


def test_the_api_takes_images_too(images_kernel: KernelDriver, server: StandInServer) -> None:
    images_kernel.ok(
        "import ollama_nb\n"
        "r = ollama_nb.generate('Hi.', 'stand-in-vision', images=[img_u8, 'red.png'],"
        " display=False)"
    )
    assert [decoded(d).size for d in server.last.body["images"]] == [(8, 6), (40, 30)]
    images_kernel.ok(
        "r = ollama_nb.generate('Hi.', 'stand-in-vision', images=img_pil, display=False)"
    )
    assert [decoded(d).size for d in server.last.body["images"]] == [(21, 13)]


def test_chat_keeps_images_in_the_history(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    kernel = images_kernel
    kernel.ok("%ollama reset")
    assert run_cell(kernel, "stand-in-vision --chat --image img_pil", "What is it?").status == "ok"
    first = server.last.body["messages"]
    assert first[-1]["role"] == "user" and len(first[-1]["images"]) == 1
    assert run_cell(kernel, "stand-in-vision --chat", "And now?").status == "ok"
    messages = server.last.body["messages"]
    assert messages[0]["images"] == first[-1]["images"]  # the same base64, not re-encoded
    assert "images" not in messages[-1]
    kernel.ok("%ollama reset")


def test_errors_before_sending(images_kernel: KernelDriver, server: StandInServer) -> None:
    kernel = images_kernel
    kernel.ok("not_an_image = 3.5")
    kernel.ok("scan_bad = np.full((4, 4), 2.0); deep = Image.new('F', (2, 2), -1.0)")
    for option, words in [
        ("--image missing.png", ("no file 'missing.png'",)),
        ("--image not_an_image", ("not_an_image: cannot send a float",)),
        ("--image scan_bad", ("scan_bad: a float array must hold values from 0 to 1",)),
        ("--image img_u8 --image deep", ("deep: a float PIL image (mode 'F')",)),
        ("--image img_fig_flat", ("img_fig_flat: cannot make an image file of this Figure",)),
    ]:
        cell = run_cell(kernel, f"stand-in-vision {option}")
        assert cell.ename == "UsageError", cell.error_text()
        assert all(w in cell.error_text() for w in words), cell.error_text()
        assert len(cell.error_text().strip().splitlines()) == 1, cell.error_text()
    cell = kernel.run(
        "import ollama_nb\n"
        "ollama_nb.generate('Hi.', 'stand-in-vision', images=[img_u8, scan_bad], display=False)"
    )
    assert "images[1]: a float array must hold values from 0 to 1" in cell.error_text()
    assert all(r.path != "/api/generate" for r in server.requests)


def test_a_model_without_vision_is_refused_in_one_line(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(images_kernel, "stand-in --image img_u8")
    line = assert_one_line_error(cell, "OllamaResponseError", "cannot take images")
    assert "stand-in-vision" in line  # names the local models that can
    assert all(r.path != "/api/generate" for r in server.requests)
    # Like any failed request: a record with its status line (and the image it would have
    # sent), and the result in _ollama; the message is said once, in the error.
    (record,) = cell.records()
    status = r"\[1 image sent\]\n\nstand-in · error · 0 tokens · \d+\.\d s"
    assert re.fullmatch(status, record["text/plain"]), record["text/plain"]
    assert "<img" in record["text/html"]
    assert images_kernel.value("_ollama.done_reason") == "error"


def test_the_servers_400_for_images_says_the_model_cannot_take_them(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    # When /api/show cannot tell, the request goes out and the server's 400 is reworded.
    server.configure(status=400, error="this model is missing data required for image input")
    cell = run_cell(images_kernel, "stand-in --image img_u8")
    line = assert_one_line_error(cell, "OllamaResponseError", "cannot take images", "HTTP 400")
    assert "stand-in" in line
    assert server.last.path == "/api/generate" and server.last.body["images"]


def test_the_live_view_shows_the_thumbnails_too(
    images_kernel: KernelDriver, server: StandInServer
) -> None:
    cell = run_cell(images_kernel, "stand-in-vision --image img_pil", "Hi.")
    assert cell.status == "ok", cell.error_text()
    shown = [
        m.content["data"]["state"]["value"]
        for m in cell.comm_opens()
        if '<img src="data:image/png;base64,' in str(m.content["data"]["state"].get("value", ""))
    ]
    assert len(shown) == 1 and shown[0].count("<img") == 1
