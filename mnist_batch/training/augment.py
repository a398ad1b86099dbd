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
