"""Helpers and session fixtures for the preprocessing and scoring tests.

* :func:`scan_like` turns a real MNIST digit into a scan: larger, dark ink on light,
  textured paper, off-centre.
* :func:`encode_variants` encodes one digit in every mode/format the scorer must accept.
* :func:`write_bad_inputs` writes the issue's whole list of hostile files into a folder.
* :func:`train_tiny_model` trains a small CNN on the bundled sample in a few seconds and
  exports it as ``.keras`` + model card, with plain Keras (never the training package).

Test modules use the session fixtures by assigning them at module level, e.g.
``tiny_model = scoring_fixtures.tiny_model``.
"""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnist_batch.constants import MNIST_CLASS_NAMES, MODEL_INPUT_SHAPE, PREPROCESS_VERSION
from mnist_batch.model_card import ModelCard, file_sha256, write_card


def write_train_digits(sample_data, inputs: pathlib.Path, n: int) -> None:
    """The first ``n`` real training digits as PNG files under inputs/<label>/."""
    train = sample_data.split("train")
    for i in range(n):
        folder = inputs / str(train.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[i]).save(folder / f"{i:05d}.png")


def scan_like(digit: np.ndarray, rng: np.random.Generator, width: int = 200, height: int = 260) -> np.ndarray:
    """A 28x28 white-on-black digit as a ``height``x``width`` scan: dark ink, textured paper, off-centre."""
    side = int(rng.integers(90, 170))
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float64) / 255.0
    paper, ink = float(rng.uniform(190, 240)), float(rng.uniform(10, 70))
    canvas = np.zeros((height, width))
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    canvas[top : top + side, left : left + side] = glyph
    out = paper - canvas * (paper - ink) + rng.normal(0.0, 6.0, canvas.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def encode_variants(digit: np.ndarray) -> dict[str, bytes]:
    """One white-on-black 28x28 digit encoded in every mode/format the scorer accepts.

    Keys are file names; every one should preprocess to (nearly) the digit itself.
    """
    white_on_black = Image.fromarray(digit, mode="L")
    dark_on_light = Image.fromarray(255 - digit, mode="L")
    rgb = Image.merge("RGB", [dark_on_light] * 3)
    variants = {
        "gray.png": encode(white_on_black, "PNG"),
        "scan_gray.png": encode(dark_on_light, "PNG"),
        "rgb.jpg": encode(rgb, "JPEG", quality=95),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "one_bit.bmp": encode(dark_on_light.point(lambda v: 255 if v >= 128 else 0).convert("1"), "BMP"),
        "sixteen_bit.png": encode(Image.fromarray(digit.astype(np.uint16) * 257), "PNG"),
        "digit.webp": encode(white_on_black, "WEBP", lossless=True),
        "digit.tiff": encode(white_on_black, "TIFF"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG"),
    }
    # Palette PNG whose paper colour is transparent: composited on white.
    pal = dark_on_light.convert("P")
    lut = pal.getpalette()[:768]
    paper_index = int(np.asarray(pal)[0, 0])
    variants["palette_transparent.png"] = encode(pal, "PNG", transparency=paper_index, palette=lut)
    # Black ink with coverage only in alpha (transparent background, RGB all black).
    rgba = Image.merge("RGBA", [Image.new("L", (28, 28), 0)] * 3 + [white_on_black])
    variants["ink_in_alpha.png"] = encode(rgba, "PNG")
    # LA: grey ink on a transparent background.
    variants["la.png"] = encode(Image.merge("LA", [Image.new("L", (28, 28), 0), white_on_black]), "PNG")
    # Animated GIF: the first frame is the digit, the second is blank.
    frames = [white_on_black.convert("P"), Image.new("L", (28, 28), 0).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    variants["animated.gif"] = buf.getvalue()
    # Stored rotated 90 degrees with EXIF orientation 6 ("rotate 90 CW to display").
    exif = Image.Exif()
    exif[0x0112] = 6
    variants["exif_rotated.jpg"] = encode(
        Image.merge("RGB", [white_on_black.transpose(Image.Transpose.ROTATE_90)] * 3), "JPEG", quality=95, exif=exif
    )
    return variants


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming ``width``x``height`` (8-bit grey) + a tiny IDAT + IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


# Where each hostile file must land: "prediction", "blank" (a prediction flagged blank),
# or "error:<stage>".
BAD_INPUT_EXPECTATIONS = {
    "zero_byte.png": "error:decode",
    "truncated.png": "error:decode",
    "truncated.jpg": "error:decode",
    "text.png": "error:decode",
    "page.jpg": "error:decode",
    "bomb_60000x60000.png": "error:decode",
    "zero_by_zero.png": "error:decode",
    "sixteen_bit.png": "prediction",
    "cmyk.jpg": "prediction",
    "palette_transparent.png": "prediction",
    "ink_in_alpha.png": "prediction",
    "animated.gif": "prediction",
    "all_white.png": "blank",
    "all_black.png": "blank",
    "one_bit.bmp": "prediction",
    "large_3000x2000.png": "prediction",
    "digit.webp": "prediction",
    "digit.tiff": "prediction",
    "mon chiffre é ü.png": "prediction",
    "x.png/inside.png": "prediction",
    "unreadable.png": "error:read",
}


def write_bad_inputs(directory: pathlib.Path, digit: np.ndarray, rng: np.random.Generator) -> dict[str, str]:
    """Writes every hostile input of the issue into ``directory``; returns BAD_INPUT_EXPECTATIONS.

    ``x.png`` is a directory (with one good image inside). ``unreadable.png`` gets mode 000;
    tests running as root must also use :func:`enforce_permissions` (root ignores mode bits).
    """
    directory.mkdir(parents=True, exist_ok=True)
    variants = encode_variants(digit)
    good_png = variants["gray.png"]
    jpg = encode(Image.fromarray(scan_like(digit, rng)), "JPEG", quality=90)
    files = {
        "zero_byte.png": b"",
        "truncated.png": good_png[: len(good_png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 3],
        "text.png": b"just some text, not an image\n" * 4,
        "page.jpg": b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
        "bomb_60000x60000.png": png_header_only(60000, 60000),
        "zero_by_zero.png": png_header_only(0, 0),
        "all_white.png": encode(Image.new("L", (28, 28), 255), "PNG"),
        "all_black.png": encode(Image.new("L", (40, 30), 0), "PNG"),
        "large_3000x2000.png": encode(Image.fromarray(scan_like(digit, rng, width=3000, height=2000)), "PNG"),
        "mon chiffre é ü.png": good_png,
        "x.png/inside.png": good_png,
        "unreadable.png": good_png,
    }
    for name in ("sixteen_bit.png", "cmyk.jpg", "palette_transparent.png", "ink_in_alpha.png", "animated.gif"):
        files[name] = variants[name]
    for name in ("one_bit.bmp", "digit.webp", "digit.tiff"):
        files[name] = variants[name]
    assert set(files) == set(BAD_INPUT_EXPECTATIONS)
    for name, data in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chmod(directory / "unreadable.png", 0)
    return dict(BAD_INPUT_EXPECTATIONS)


def enforce_permissions(monkeypatch) -> None:
    """Makes the scorer's file opens refuse mode-000 files even for root, as they would for a user.

    Tests run as root here, and root reads mode-000 files; this patch raises the
    PermissionError a normal user gets, at the same calls the scorer makes: Beam's
    ``FileSystems.open`` (remote paths) and ``mnist_batch.files.open_local`` (local paths). Only effective
    for in-process runners (DirectRunner in_memory).
    """
    from apache_beam.io.filesystems import FileSystems

    from mnist_batch import files

    def guarded(original):
        def guarded_open(path, *args, **kwargs):
            if os.path.exists(path) and os.stat(path).st_mode & 0o444 == 0:
                raise PermissionError(13, "Permission denied", path)
            return original(path, *args, **kwargs)

        return guarded_open

    monkeypatch.setattr(FileSystems, "open", staticmethod(guarded(FileSystems.open)))
    monkeypatch.setattr(files, "open_local", guarded(files.open_local))


def train_tiny_model(
    directory: pathlib.Path,
    *,
    name: str = "tiny",
    epochs: int = 2,
    class_names: tuple[str, ...] = MNIST_CLASS_NAMES,
    seed: int = 0,
) -> pathlib.Path:
    """Trains a small CNN on the bundled sample (~95 % test accuracy, a few seconds) and exports it.

    Returns the ``.keras`` path; the card beside it has the right model_id.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from mnist_batch.data import load_dataset
    from mnist_batch.preprocess import normalize

    data = load_dataset("sample")
    train = data.split("train")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(MODEL_INPUT_SHAPE),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(len(class_names), activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(normalize(train.images), train.labels, epochs=epochs, batch_size=64, verbose=0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.keras"
    model.save(path)
    card = ModelCard(
        model_name=name,
        model_id=file_sha256(path),
        class_names=tuple(class_names),
        input_shape=MODEL_INPUT_SHAPE,
        preprocess_version=PREPROCESS_VERSION,
        dataset="sample",
        epochs=epochs,
    )
    write_card(card, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    """Path of a small trained digit CNN (``.keras`` + card), shared by the whole session."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def sample_data():
    from mnist_batch.data import load_dataset

    return load_dataset("sample")
