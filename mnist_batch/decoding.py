"""Decode any scan: encoded image bytes -> a uint8 grayscale array, under a pixel limit.

:func:`decode_image` takes the first frame, applies the EXIF orientation, handles every Pillow
mode (transparency composited on contrasting paper) and decodes very large images reduced
(:func:`reduce_for_work`), so memory per image is bounded. Pure numpy + Pillow, no I/O;
:mod:`mnist_batch.preprocess` turns the result into MNIST format.
"""

from __future__ import annotations

import io
import math
import re
import warnings

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from mnist_batch.constants import DEFAULT_MAX_PIXELS

MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
"""Images with more pixels than this are refused (decompression-bomb guard; :data:`~mnist_batch.constants.DEFAULT_MAX_PIXELS`)."""

MIN_INK_CONTRAST = 24
"""An image whose ink is less than this many grey levels above its background is blank."""

MAX_WORK_PIXELS = 4_000_000
"""Larger images are decoded reduced (JPEG: DCT scaling while decoding; others: box-averaged
by an integer factor right after decoding) so that at most this many pixels reach the
grayscale and float work. A 28x28 digit needs far fewer; this bounds memory per image
(docs/scoring.md, "Memory per image")."""

EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation tag value -> the transpose that displays the image upright."""

EXIF_ORIENTATION = 0x0112

_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F")
"""Modes ``Image.reduce`` handles; others are converted first (see :func:`reduce_for_work`)."""

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class ImageDecodeError(ValueError):
    """Encoded bytes are not a decodable image, or exceed :data:`MAX_IMAGE_PIXELS`."""


def open_image(
    data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, max_work_pixels: int = MAX_WORK_PIXELS
) -> Image.Image:
    """Decodes bytes to a loaded Pillow image: first frame, EXIF orientation applied.

    The size is checked from the header, before any pixel is decoded, so a small file
    claiming 60000x60000 pixels is refused at once (decompression-bomb guard). Images over
    ``max_work_pixels`` come back reduced to at most that many pixels (:func:`reduce_for_work`);
    smaller ones come back exactly as decoded.

    Raises:
      ImageDecodeError: empty, unrecognised, truncated, 0-pixel or oversized input.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                check_size(img.size, max_pixels)
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                if img.size[0] * img.size[1] > max_work_pixels:
                    return reduce_for_work(img, max_work_pixels)
                img.load()
                out = ImageOps.exif_transpose(img)
                if out is img:
                    out = img.copy()
                return out
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"over the pixel limit (decompression-bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image Pillow can identify (unknown format or not an image)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {_without_addresses(str(exc))}") from exc


def check_size(size: tuple[int, int], max_pixels: int) -> None:
    """Refuses a header size that is empty or over ``max_pixels``.

    Raises:
      ImageDecodeError: naming the size.
    """
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(f"image is {width}x{height} pixels, over the limit of {max_pixels:,}")
    if width == 0 or height == 0:
        raise ImageDecodeError(f"image is {width}x{height} pixels")


def reduction_factor(size: tuple[int, int], max_work_pixels: int) -> int:
    """The smallest integer factor k such that (w / k) x (h / k) has at most ``max_work_pixels`` pixels."""
    width, height = size
    factor = max(1, math.ceil(math.sqrt(width * height / max_work_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_work_pixels:
        factor += 1
    return factor


def reduce_for_work(img: Image.Image, max_work_pixels: int = MAX_WORK_PIXELS) -> Image.Image:
    """Decodes a large image reduced to at most ``max_work_pixels`` pixels, EXIF orientation applied.

    JPEG decodes straight at 1/2, 1/4 or 1/8 scale (``Image.draft``), so the full image is
    never in memory. Other formats decode whole once (the encoded format's own bytes per pixel,
    e.g. 4 for RGBA) and are box-averaged by an integer factor (``Image.reduce``) before any
    conversion; modes ``reduce`` lacks (``1``, ``P``, ``I;16``) are converted to the nearest
    mode it has first. Transparency and bit depth survive, so :func:`to_grayscale` treats the
    result as it would the full image.

    Args:
      img: an opened, not yet loaded image (first frame selected).
      max_work_pixels: pixel budget of the result.

    Returns:
      A loaded image of at most ``max_work_pixels`` pixels.
    """
    orientation = img.getexif().get(EXIF_ORIENTATION)
    factor = reduction_factor(img.size, max_work_pixels)
    if img.format == "JPEG":
        img.draft(img.mode, (math.ceil(img.size[0] / factor), math.ceil(img.size[1] / factor)))
    img.load()
    factor = reduction_factor(img.size, max_work_pixels)  # what the draft scaling left to do
    work = img
    if factor > 1:
        if work.mode not in _REDUCIBLE_MODES:
            work = work.convert(_reducible_mode(work))
        work = reduce_with_alpha(work, factor) if work.mode in ("LA", "RGBA") else work.reduce(factor)
        if img.mode.startswith("I;16"):
            work = work.convert(img.mode)  # keep the 16-bit scaling of to_grayscale
    elif work is img:
        work = img.copy()
    transpose = EXIF_TRANSPOSE.get(orientation)
    return work.transpose(transpose) if transpose is not None else work


def reduce_with_alpha(img: Image.Image, factor: int) -> Image.Image:
    """``Image.reduce`` of an ``LA`` / ``RGBA`` image, one band at a time.

    Averages premultiplied colour, as ``Image.reduce`` does, but without its full-size
    premultiplied copy: at most two full-size single bands exist besides ``img``.
    """
    alpha = img.getchannel("A")
    colour = [ImageChops.multiply(img.getchannel(band), alpha).reduce(factor) for band in img.mode[:-1]]
    premultiplied = Image.merge(img.mode[:-1] + "a", [*colour, alpha.reduce(factor)])
    return premultiplied.convert(img.mode)


def _reducible_mode(img: Image.Image) -> str:
    """The mode to convert ``img`` to before ``Image.reduce``: keeps transparency and bit depth."""
    if img.mode.startswith("I;16"):
        return "I"
    if img.mode == "P":
        return "RGBA" if "transparency" in img.info or img.palette.mode == "RGBA" else "RGB"
    if img.mode in ("PA",):
        return "RGBA"
    return "L"  # "1" and other single-channel modes


def _without_addresses(message: str) -> str:
    """Drops ``<... object at 0x...>`` reprs, so the same bad file always gets the same message."""
    return re.sub(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>", "", message)


def _luminance(img: Image.Image) -> np.ndarray:
    """uint8 [H, W] luminance of an image without alpha, any bit depth."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        else:
            top = float(array.max()) if array.size else 0.0
            scale = 1.0 if top <= 255.0 else 255.0 / (65535.0 if top <= 65535.0 else top)
            if mode == "F" and 0.0 < top <= 1.0:
                scale = 255.0
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    if mode not in ("1", "RGB"):
        img = img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...
    return np.asarray(img.convert("L"), dtype=np.uint8)


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 [H, W] luminance, transparency composited away.

    * ``1``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``: Pillow's ITU-R 601-2 luminance.
    * ``I;16`` / ``I`` / ``F`` (16-bit or float): scaled to 8 bits, not clipped.
    * With alpha (``LA``, ``RGBA``, ``P`` with a transparency entry): when the colour
      carries no picture (a uniform colour, ink only in the alpha channel) the alpha
      itself is the ink; otherwise it is composited on the paper: the median of the
      opaque pixels when they cover most of the image (a scan with transparent margins),
      else a colour contrasting with them (dark strokes on white, light strokes on black).
    """
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in _ALPHA_MODES:
        return _luminance(img)
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    gray = _luminance(rgba.convert("RGB")).astype(np.float64)
    opaque = alpha > 0.5
    if not opaque.any() or np.ptp(gray[opaque]) < MIN_INK_CONTRAST:
        if np.ptp(alpha) * 255.0 >= MIN_INK_CONTRAST:
            return np.rint(alpha * 255.0).astype(np.uint8)  # ink only in alpha: alpha is the ink
        return np.rint(gray).astype(np.uint8) if opaque.any() else np.zeros(gray.shape, np.uint8)
    if opaque.mean() >= 0.5:
        background = float(np.median(gray[opaque]))  # a picture with paper: extend the paper
    else:
        background = 255.0 if gray[opaque].mean() < 128.0 else 0.0  # strokes: contrasting paper
    return np.clip(np.rint(gray * alpha + background * (1.0 - alpha)), 0, 255).astype(np.uint8)


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes image bytes to a uint8 grayscale array (first frame, EXIF orientation applied).

    Args:
      data: the encoded file (PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
      max_pixels: refuse images with more pixels than this, before decoding them.

    Returns:
      uint8 [H, W], luminance (see :func:`to_grayscale` for modes and transparency); images
      over :data:`MAX_WORK_PIXELS` come back reduced by an integer factor (:func:`reduce_for_work`).

    Raises:
      ImageDecodeError: empty, unrecognised, truncated or oversized input.
    """
    img = open_image(data, max_pixels=max_pixels)
    try:
        return to_grayscale(img)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"cannot convert {img.mode} image: {type(exc).__name__}: {exc}") from exc
