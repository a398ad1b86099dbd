"""Helpers and session fixtures for the preprocessing and scoring tests.

* :func:`scan_like` turns a real MNIST digit into a scan: larger, dark ink on light,
  textured paper, off-centre.
* :func:`encode_variants` encodes one digit in every mode/format the scorer must accept.
* :func:`write_bad_inputs` writes the issue's whole list of hostile files into a folder.
* :func:`train_tiny_model` trains a small CNN on the bundled sample in a few seconds and
  exports it as ``.keras`` + model card (+ ``.tflite``), with plain Keras (never the training
  package); trained once per checkout and shared by every pytest worker (``.cache/test-models``).

Test modules use the session fixtures by assigning them at module level, e.g.
``tiny_model = scoring_fixtures.tiny_model``.
"""

from __future__ import annotations

import io
import os
import pathlib
import struct
import time
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


def started_pool(max_bytes: int = 1_000_000, max_pixels: int = 10_000_000, **kwargs):
    """A :class:`~mnist_batch.scoring.decode_pool.DecodePool` whose helper has answered (so groups go
    to it, not the caller); ``kwargs``: the pool's (``depth``, ``model``)."""
    from mnist_batch.scoring.decode_pool import DecodePool

    pool = DecodePool(max_bytes, max_pixels, **kwargs)
    deadline = time.monotonic() + 30
    while pool.helper_pid is None:
        assert time.monotonic() < deadline, "the helper did not start"
        pool.ready()
        time.sleep(0.01)
    return pool


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


MODEL_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "test-models"
"""Trained tiny models, shared by every pytest worker and run of this checkout (``make clean`` empties it)."""


def save_untrained_checked_model(path: pathlib.Path, seed: int) -> pathlib.Path:
    """An untrained 11-output model (ten digits and "not a digit") saved at ``path``: tests whose flags
    only have to follow the outputs, whatever they are. The caller writes its card."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(11, activation="softmax")]
    )
    model.save(path)
    return path


def _fit_tiny_model(path: pathlib.Path, *, epochs: int, num_classes: int, seed: int) -> None:
    """Trains the small CNN on the bundled sample with plain Keras and saves it to ``path`` (.keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from mnist_batch.data import load_dataset
    from mnist_batch.preprocess import normalize

    train = load_dataset("sample").split("train")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(MODEL_INPUT_SHAPE),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(normalize(train.images), train.labels, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)


def _cache_key(**args) -> str:
    """What a cached model is made from: the training code, the preprocessing, the sample, the library versions."""
    import hashlib
    import importlib.metadata
    import inspect

    from mnist_batch import preprocess
    from mnist_batch.data import sample

    digest = hashlib.sha256(inspect.getsource(_fit_tiny_model).encode())
    for module in (preprocess, sample):
        digest.update(pathlib.Path(module.__file__).read_bytes())
    digest.update(pathlib.Path(sample.__file__).with_name("assets").joinpath("mnist_sample.npz").read_bytes())
    for package in ("keras", "tensorflow", "ai-edge-litert"):
        digest.update(importlib.metadata.version(package).encode())
    digest.update(repr(sorted(args.items())).encode())
    return digest.hexdigest()[:16]


def _cached_tiny_model(*, epochs: int, num_classes: int, seed: int, litert: bool) -> pathlib.Path:
    """The cache folder holding ``model.keras`` (and ``model.tflite`` + ``litert.json``), trained once.

    Concurrent pytest workers wait on one lock file: the first trains, the others copy.
    """
    import fcntl
    import json
    import shutil
    import tempfile

    key = _cache_key(epochs=epochs, num_classes=num_classes, seed=seed, litert=litert)
    folder = MODEL_CACHE / key
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(MODEL_CACHE / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "model.keras").is_file():
            return folder
        work = pathlib.Path(tempfile.mkdtemp(dir=MODEL_CACHE, prefix=f".{key}-"))
        _fit_tiny_model(work / "model.keras", epochs=epochs, num_classes=num_classes, seed=seed)
        if litert:
            entry = _make_litert(work / "model.keras", num_classes)
            (work / "litert.json").write_text(json.dumps(entry), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(work, folder)
    return folder


def _make_litert(keras_path: pathlib.Path, num_classes: int) -> dict:
    """The LiteRT file beside ``keras_path``, measured on the sample's test split (as export does); its card entry."""
    import keras

    from mnist_batch.data import load_dataset
    from mnist_batch.models.artifacts import make_artifact

    card = _card(keras_path, "model", tuple(str(i) for i in range(num_classes)), epochs=0)
    write_card(card, keras_path)
    test = load_dataset("sample").split("test")
    made = make_artifact(keras.saving.load_model(keras_path), keras_path, card, "litert", test.images, test.labels)
    return made.runtimes["litert"]


def _card(path: pathlib.Path, name: str, class_names: tuple[str, ...], *, epochs: int, runtimes=None) -> ModelCard:
    return ModelCard(
        model_name=name,
        model_id=file_sha256(path),
        class_names=tuple(class_names),
        input_shape=MODEL_INPUT_SHAPE,
        preprocess_version=PREPROCESS_VERSION,
        dataset="sample",
        epochs=epochs,
        runtimes=runtimes or {},
    )


def train_tiny_model(
    directory: pathlib.Path,
    *,
    name: str = "tiny",
    epochs: int = 2,
    class_names: tuple[str, ...] = MNIST_CLASS_NAMES,
    seed: int = 0,
    litert: bool = False,
) -> pathlib.Path:
    """A small CNN trained on the bundled sample (~95 % test accuracy), exported to ``directory``.

    Trained once per checkout and arguments (:data:`MODEL_CACHE`), then copied: ``NAME.keras`` and
    its card (the right model_id); with ``litert``, also ``NAME.tflite`` and its card entry, as
    ``train --export`` makes them. Returns the ``.keras`` path.
    """
    import json
    import shutil

    cached = _cached_tiny_model(epochs=epochs, num_classes=len(class_names), seed=seed, litert=litert)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.keras"
    shutil.copyfile(cached / "model.keras", path)
    runtimes = {}
    if litert:
        shutil.copyfile(cached / "model.tflite", path.with_suffix(".tflite"))
        entry = json.loads((cached / "litert.json").read_text(encoding="utf-8"))
        runtimes["litert"] = {**entry, "file": path.with_suffix(".tflite").name}
    write_card(_card(path, name, class_names, epochs=epochs, runtimes=runtimes), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    """Path of a small trained digit CNN (``.keras`` + card), shared by the whole session."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_litert_model(tmp_path_factory) -> pathlib.Path:
    """The tiny model with its LiteRT file and card entry, as ``train --export`` makes them.

    ``--runtime auto`` scores it with LiteRT, so a CLI process never imports TensorFlow (~3 s and
    ~650 MB less per launch): for the end-to-end tests whose point is not the runtime.
    """
    return train_tiny_model(tmp_path_factory.mktemp("tiny_litert_model"), litert=True)


@pytest.fixture(scope="session")
def sample_data():
    from mnist_batch.data import load_dataset

    return load_dataset("sample")
