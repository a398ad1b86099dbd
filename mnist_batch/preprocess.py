"""Pure numpy + Pillow preprocessing shared by training and scoring.

One source of truth for how pixels become model inputs:

* :func:`normalize` maps uint8 MNIST-format images (white ink on black, 28x28) to the
  model's float32 input. It is a 256-entry lookup table (:data:`PIXEL_LUT`), so any
  framework that gathers from the same table (``tf.gather`` in the tf.data pipeline)
  produces bit-identical inputs.
* :func:`~mnist_batch.decoding.decode_image` (module :mod:`mnist_batch.decoding`, re-exported
  here) turns encoded image bytes into a uint8 grayscale array under a pixel limit: first
  frame, EXIF orientation applied, every Pillow mode handled.
* :func:`to_mnist` turns any grayscale digit image (a scan, a photo crop, a drawing) into
  MNIST format the way MNIST itself was made: polarity (:func:`is_dark_on_light`),
  background subtraction (:func:`subtract_background`), contrast stretch
  (:func:`stretch_contrast`), crop to the ink (:func:`ink_bbox`), longer side to 20 px
  anti-aliased (:func:`fit_to_box`), pasted into 28x28 with its centre of mass at the
  centre (:func:`paste_centered`). A 28x28 white-on-black input is already MNIST format
  and passes through unchanged, so exported test images reach the model bit-identical to
  ``normalize()`` of the training array.
* :func:`preprocess_bytes` = decode + :func:`to_mnist`, the scoring side's one call.

Every function is pure (no I/O, no globals mutated) and framework-free.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from mnist_batch.constants import IMAGE_SHAPE, IMAGE_SIZE
from mnist_batch.decoding import (  # noqa: F401 -- re-exported: callers decode and preprocess from one module
    MAX_IMAGE_PIXELS,
    MAX_WORK_PIXELS,
    MIN_INK_CONTRAST,
    ImageDecodeError,
    decode_image,
    open_image,
    to_grayscale,
)

PIXEL_LUT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float32)
"""float32 [256]: the model-input value of each byte value (v / 255)."""

FIT_SIZE = 20
"""MNIST digits are scaled so that their longer side is this many pixels."""

NOISE_SIGMAS = 4.0
"""Background noise (robust sigma of the border) times this is subtracted with the background."""

BBOX_FRACTION = 0.2
"""Only pixels at least this fraction of the brightest ink count for the ink's bounding box,
so faint specks and left-over paper grain do not widen the crop."""


def normalize(images: np.ndarray) -> np.ndarray:
    """Maps uint8 MNIST-format images to model inputs.

    Args:
      images: uint8 [..., 28, 28].

    Returns:
      float32 [..., 28, 28, 1] in [0, 1], equal to ``images / 255`` rounded to float32.

    Raises:
      ValueError: if ``images`` is not uint8 or not 28x28 in its last two axes.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize expects uint8 images, got {images.dtype}")
    if images.shape[-2:] != IMAGE_SHAPE:
        raise ValueError(f"normalize expects [..., 28, 28] images, got {images.shape}")
    return PIXEL_LUT[images][..., np.newaxis]


# --- decoding -------------------------------------------------------------------------------


# --- MNIST-style normalisation ---------------------------------------------------------------


def border_pixels(gray: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring (``max(1, min(H, W) // 20)`` wide), flattened."""
    h, w = gray.shape
    k = max(1, min(h, w) // 20)
    if h <= 2 * k or w <= 2 * k:
        return gray.ravel()
    return np.concatenate([gray[:k].ravel(), gray[-k:].ravel(), gray[k:-k, :k].ravel(), gray[k:-k, -k:].ravel()])


def background_level(gray: np.ndarray) -> int:
    """Grey level of the paper: the median of the border ring."""
    return int(np.median(border_pixels(gray)))


def is_dark_on_light(gray: np.ndarray) -> bool:
    """True when the ink is darker than the paper (a scan), False for white-on-black (MNIST).

    The ink is whatever departs furthest from the background level (:func:`background_level`),
    so grey paper works as well as white.
    """
    if gray.size == 0:
        return False
    bg = background_level(gray)
    return bg - int(gray.min()) > int(gray.max()) - bg


def subtract_background(ink: np.ndarray) -> np.ndarray:
    """White-on-black uint8 -> the same with the paper level and its noise removed (clipped at 0).

    Subtracts the border median plus :data:`NOISE_SIGMAS` robust sigmas (1.4826 x MAD) of
    the border, so paper texture and scanner noise become 0.
    """
    border = border_pixels(ink).astype(np.float64)
    bg = np.median(border)
    sigma = 1.4826 * np.median(np.abs(border - bg))
    level = bg + NOISE_SIGMAS * sigma
    return np.clip(np.rint(ink.astype(np.float64) - level), 0, 255).astype(np.uint8)


def stretch_contrast(ink: np.ndarray) -> np.ndarray:
    """Scales so the brightest ink is 255 (0 stays 0); an all-zero image is returned as is."""
    top = int(ink.max()) if ink.size else 0
    if top == 0 or top == 255:
        return ink.copy()
    return np.clip(np.rint(ink.astype(np.float64) * 255.0 / top), 0, 255).astype(np.uint8)


def ink_bbox(ink: np.ndarray, fraction: float = BBOX_FRACTION) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the pixels >= ``fraction`` x the maximum (and > 0).

    Bottom/right are exclusive; None when the image is all zero.
    """
    top_value = int(ink.max()) if ink.size else 0
    if top_value == 0:
        return None
    mask = ink >= max(1, fraction * top_value)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def fit_to_box(glyph: np.ndarray, size: int = FIT_SIZE) -> np.ndarray:
    """Scales so the longer side is ``size`` px, keeping the aspect ratio (Lanczos, anti-aliased)."""
    h, w = glyph.shape
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_h, new_w) == (h, w):
        return glyph.copy()
    resized = Image.fromarray(glyph, mode="L").resize((new_w, new_h), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) of the intensity-weighted centre; the geometric centre for an all-zero image."""
    weights = image.astype(np.float64)
    total = weights.sum()
    h, w = image.shape
    if total == 0:
        return (h - 1) / 2.0, (w - 1) / 2.0
    rows = np.arange(h, dtype=np.float64)
    cols = np.arange(w, dtype=np.float64)
    return float(weights.sum(axis=1) @ rows / total), float(weights.sum(axis=0) @ cols / total)


def paste_centered(glyph: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Pastes ``glyph`` into a black ``size``x``size`` canvas with its centre of mass at (14, 14).

    (14, 14) is where the bundled MNIST digits have theirs (mean 13.996, 13.995). The glyph is
    kept whole inside the canvas.
    """
    h, w = glyph.shape
    if h > size or w > size:
        raise ValueError(f"glyph {h}x{w} does not fit in {size}x{size}")
    cy, cx = center_of_mass(glyph)
    top = min(max(round(size / 2 - cy), 0), size - h)
    left = min(max(round(size / 2 - cx), 0), size - w)
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[top : top + h, left : left + w] = glyph
    return canvas


@dataclasses.dataclass(frozen=True)
class MnistImage:
    """Result of :func:`to_mnist`.

    Attributes:
      pixels: uint8 [28, 28], white ink on black; feed to :func:`normalize`.
      blank: no ink was found (the pixels are all zero); still scored, flagged.
      passthrough: the input was already MNIST format and was returned unchanged.
      inverted: the input was dark ink on light paper.
    """

    pixels: np.ndarray
    blank: bool
    passthrough: bool = False
    inverted: bool = False


def is_mnist_format(gray: np.ndarray) -> bool:
    """28x28 and white ink on a dark background: already what the model was trained on."""
    return gray.shape == IMAGE_SHAPE and not is_dark_on_light(gray)


def to_mnist(gray: np.ndarray) -> MnistImage:
    """Any uint8 grayscale digit image -> MNIST format (see the module docstring for the steps)."""
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"to_mnist expects a non-empty uint8 [H, W] array, got {gray.dtype} {gray.shape}")
    if is_mnist_format(gray):
        blank = int(gray.max()) - int(gray.min()) < MIN_INK_CONTRAST
        return MnistImage(pixels=gray.copy(), blank=blank, passthrough=True)
    inverted = is_dark_on_light(gray)
    ink = 255 - gray if inverted else gray
    ink = subtract_background(ink)
    if int(ink.max()) < MIN_INK_CONTRAST:
        return MnistImage(pixels=np.zeros(IMAGE_SHAPE, np.uint8), blank=True, inverted=inverted)
    ink = stretch_contrast(ink)
    top, left, bottom, right = ink_bbox(ink)  # not None: max() >= MIN_INK_CONTRAST
    glyph = fit_to_box(ink[top:bottom, left:right])
    return MnistImage(pixels=paste_centered(glyph), blank=False, inverted=inverted)


def preprocess_bytes(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> MnistImage:
    """Encoded image bytes -> :class:`MnistImage` (decode, then :func:`to_mnist`).

    Raises:
      ImageDecodeError: the bytes cannot be decoded (see :func:`decode_image`).
    """
    return to_mnist(decode_image(data, max_pixels=max_pixels))
