"""Pure numpy + Pillow preprocessing shared by training and scoring.

One source of truth for how pixels become model inputs:

* :func:`normalize` maps uint8 MNIST-format images (white ink on black, 28x28) to the
  model's float32 input. It is a 256-entry lookup table (:data:`PIXEL_LUT`), so any
  framework that gathers from the same table (``tf.gather`` in the tf.data pipeline)
  produces bit-identical inputs.
* :func:`decode_image` turns encoded image bytes into a uint8 grayscale array under a
  pixel limit.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from mnist_batch.constants import IMAGE_SHAPE

PIXEL_LUT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float32)
"""float32 [256]: the model-input value of each byte value (v / 255)."""

MAX_IMAGE_PIXELS = 40_000_000
"""Images with more pixels than this are refused (decompression-bomb guard)."""


class ImageDecodeError(ValueError):
    """Encoded bytes are not a decodable image, or exceed :data:`MAX_IMAGE_PIXELS`."""


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


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes image bytes to a uint8 grayscale array (first frame, EXIF orientation ignored).

    Args:
      data: the encoded file (PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
      max_pixels: refuse images with more pixels than this, before decoding them.

    Returns:
      uint8 [H, W], luminance (ITU-R 601-2, Pillow's ``"L"`` conversion).

    Raises:
      ImageDecodeError: empty, unrecognised, truncated or oversized input.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageDecodeError(f"image is {width}x{height} pixels, over the limit of {max_pixels:,}")
                if width == 0 or height == 0:
                    raise ImageDecodeError(f"image is {width}x{height} pixels")
                img.seek(0)
                return np.asarray(img.convert("L"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc
