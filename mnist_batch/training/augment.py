"""Random shift / rotation / zoom (and optional horizontal flip) of image batches, as pure TensorFlow ops (runs inside tf.data).

Augmentation lives in the input pipeline, never in the saved model, so exported models hold
no random layers and score exactly what the scoring side feeds them.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random affine transform drawn independently for each image.

    Attributes:
      max_shift: largest shift in pixels along each axis (uniform in ``[-max_shift, max_shift]``).
      max_rotation_deg: largest rotation in degrees (uniform in ``[-r, r]``).
      max_zoom: largest relative zoom (scale uniform in ``[1 - z, 1 + z]``).
      flip: mirror half of the images left-right. Only for classes that are mirror-symmetric
        (clothes, shoes: Fashion-MNIST); never for digits, where a mirrored 2 or 7 is no digit.
    """

    max_shift: float = 2.0
    max_rotation_deg: float = 10.0  # TrainConfig.rotation / .zoom repeat these two defaults
    max_zoom: float = 0.10
    flip: bool = False


DEFAULT_AUGMENT = AugmentParams()


def random_affine(images: tf.Tensor, seed: tf.Tensor, params: AugmentParams = DEFAULT_AUGMENT) -> tf.Tensor:
    """Applies an independent random shift, rotation and zoom to each image of a batch.

    The transform is drawn with stateless RNG ops from ``seed``, so the same seed gives the
    same output (repeatable runs); the pipeline feeds a fresh seed to every batch and epoch.
    Pixels moved in from outside the image are 0 (background); bilinear interpolation.

    Args:
      images: float32 [B, H, W, 1].
      seed: int64 [2], the stateless RNG seed of this batch.
      params: the ranges of the transform.

    Returns:
      float32 [B, H, W, 1], same value range as ``images``.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = tf.random.stateless_uniform(
        [batch], seeds[0], -math.radians(params.max_rotation_deg), math.radians(params.max_rotation_deg)
    )
    scale = tf.random.stateless_uniform([batch], seeds[1], 1.0 - params.max_zoom, 1.0 + params.max_zoom)
    shift_x = tf.random.stateless_uniform([batch], seeds[2], -params.max_shift, params.max_shift)
    shift_y = tf.random.stateless_uniform([batch], seeds[3], -params.max_shift, params.max_shift)
    # Output pixel (x, y) samples input pixel M @ ((x, y) - c) + c - shift, M = rotation / scale.
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    if params.flip:
        # Mirroring negates the x column of M: x' = M @ (-(x - c), y - c) + c.
        mirror = tf.where(tf.random.stateless_uniform([batch], seeds[4]) < 0.5, -1.0, 1.0)
    else:
        mirror = tf.ones_like(angle)
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    a2 = cx - a0 * cx - a1 * cy - shift_x
    b2 = cy - b0 * cx - b1 * cy - shift_y
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.stack([height, width]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


DAMAGE_KINDS = ("noise", "blur", "thin", "thick", "contrast")
"""What :func:`random_damage` does to an image it picks (one kind each, equally likely)."""


def _gaussian_kernel(sigma: float, radius: int = 3) -> tf.Tensor:
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(x**2) / (2.0 * sigma**2))
    k2 = tf.tensordot(k, k, axes=0)
    return (k2 / tf.reduce_sum(k2))[:, :, tf.newaxis, tf.newaxis]


def random_damage(images: tf.Tensor, seed: tf.Tensor, rate: float) -> tf.Tensor:
    """Damages a random ``rate`` share of a batch the way scans are damaged; labels stay the same.

    Each picked image gets one of :data:`DAMAGE_KINDS`: Gaussian noise (sigma 0.05-0.45),
    Gaussian blur (sigma 1.0 or 1.7 px), thinner strokes (3x3 erosion), thicker strokes (3x3
    dilation), or low contrast (ink scaled by 0.25-0.7 over a background of 0-0.3). Stateless
    RNG from ``seed``, as :func:`random_affine`.

    Args:
      images: float32 [B, H, W, 1] in [0, 1].
      seed: int64 [2].
      rate: share of images damaged, in [0, 1].

    Returns:
      float32 [B, H, W, 1] in [0, 1].
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    picked = tf.random.stateless_uniform([batch], seeds[0]) < rate
    kind = tf.random.stateless_uniform([batch], seeds[1], 0, len(DAMAGE_KINDS), dtype=tf.int32)
    per_image = [batch, 1, 1, 1]
    sigma = tf.random.stateless_uniform(per_image, seeds[2], 0.05, 0.45)
    noisy = images + sigma * tf.random.stateless_normal(tf.shape(images), seeds[3])
    strong_blur = tf.random.stateless_uniform(per_image, seeds[4]) < 0.5
    blurred = tf.where(
        strong_blur,
        tf.nn.conv2d(images, _gaussian_kernel(1.7), 1, "SAME"),
        tf.nn.conv2d(images, _gaussian_kernel(1.0), 1, "SAME"),
    )
    thin = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
    thick = tf.nn.max_pool2d(images, 3, 1, "SAME")
    scale_bias = tf.random.stateless_uniform([batch, 1, 1, 2], seeds[5], 0.0, 1.0)
    scale = 0.25 + 0.45 * scale_bias[..., :1]
    faint = images * scale + 0.3 * scale_bias[..., 1:] * (1.0 - scale)
    variants = tf.stack([noisy, blurred, thin, thick, faint], axis=1)  # [B, K, H, W, 1]
    damaged = tf.gather(variants, kind, axis=1, batch_dims=1)
    out = tf.where(picked[:, tf.newaxis, tf.newaxis, tf.newaxis], damaged, images)
    return tf.clip_by_value(out, 0.0, 1.0)
