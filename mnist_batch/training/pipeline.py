"""The tf.data input pipeline: uint8 arrays -> batches of normalised (and augmented) images.

Per split::

    from_tensor_slices -> cache (memory or file) -> shuffle (train only; buffer = split size,
    seeded, reshuffled each epoch) -> batch (GLOBAL batch size) -> map (normalise, + augment
    for train only; num_parallel_calls=AUTOTUNE) -> prefetch(AUTOTUNE)

The map runs on whole batches ("vectorised mapping" in the tf.data performance guide): one
``tf.gather`` and one projective transform per batch instead of per image, several times
faster on CPU than an element-wise map with identical results. Normalisation gathers from
:data:`mnist_batch.preprocess.PIXEL_LUT`, the table the scoring side uses, so training inputs
are bit-identical to scoring inputs.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow as tf

from mnist_batch.data.base import validate_arrays
from mnist_batch.errors import DataError
from mnist_batch.preprocess import PIXEL_LUT
from mnist_batch.training.augment import DEFAULT_AUGMENT, AugmentParams, random_affine, random_damage

AUTOTUNE = tf.data.AUTOTUNE


def global_batch_size(per_replica: int, strategy: tf.distribute.Strategy | None = None) -> int:
    """Per-replica batch size x replicas in sync (the size of each batch the pipeline yields)."""
    if per_replica <= 0:
        raise ValueError(f"batch_size must be > 0, got {per_replica}")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    return per_replica * replicas


def check_arrays(images: np.ndarray, labels: np.ndarray, *, num_classes: int, where: str) -> None:
    """Refuses arrays the pipeline cannot train on, with a message naming ``where``.

    Args:
      images: expected uint8 [N, 28, 28], N > 0.
      labels: expected integers [N] in ``[0, num_classes)``.
      num_classes: number of classes.
      where: split name put in front of the message, e.g. ``"train"``.

    Raises:
      DataError: empty split, wrong dtype or shape, count mismatch, label out of range.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim >= 1 and images.shape[0] == 0:
        raise DataError(f"{where}: split is empty (0 images)")
    validate_arrays(images, labels, num_classes=num_classes, where=where)


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """Short content hash of a split, so a file cache is never reused for different data."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def normalize_tf(images: tf.Tensor) -> tf.Tensor:
    """TF twin of :func:`mnist_batch.preprocess.normalize`.

    Args:
      images: uint8 [..., 28, 28].

    Returns:
      float32 [..., 28, 28, 1], ``PIXEL_LUT[images]`` (bit-identical to the numpy version).
    """
    return tf.gather(tf.constant(PIXEL_LUT), tf.cast(images, tf.int32))[..., tf.newaxis]


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    training: bool,
    augment: bool = True,
    seed: int = 0,
    cache_dir: str | None = None,
    name: str = "train",
    prefetch: bool = True,
    cache: bool = True,
    augment_params: AugmentParams = DEFAULT_AUGMENT,
    damage: float = 0.0,
) -> tf.data.Dataset:
    """Builds the input pipeline of one split.

    Args:
      images: uint8 [N, 28, 28].
      labels: int [N] class ids in ``[0, num_classes)``.
      num_classes: C, the width of the one-hot labels.
      batch_size: the GLOBAL batch size (see :func:`global_batch_size`).
      training: shuffle (and augment, if ``augment``) -- the training split only.
      augment: random shift +-2 px, rotation +-10 deg, zoom +-10% (only with ``training``);
        ``augment_params`` changes the ranges and turns on left-right flips.
      seed: seed of the shuffle order and the augmentation; each epoch reshuffles.
      cache_dir: cache to ``cache_dir/<name>-<content hash>*`` files instead of memory.
      name: split name, used for the cache file and error messages.
      prefetch: end with ``prefetch(AUTOTUNE)`` (off only for the pipeline benchmark).
      cache: cache the decoded arrays (off only for the pipeline benchmark).
      augment_params: ranges of the augmentation.
      damage: with the augmentation, the share of images damaged per batch
        (:func:`~mnist_batch.training.augment.random_damage`).

    Returns:
      A dataset of ``(images float32 [B, 28, 28, 1], labels float32 [B, C] one-hot)``;
      the last batch of an epoch may be smaller than ``batch_size``.

    Raises:
      DataError: see :func:`check_arrays`.
      ValueError: ``batch_size`` not positive.
    """
    check_arrays(images, labels, num_classes=num_classes, where=name)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.uint8), np.asarray(labels).astype(np.int32)))
    if cache:
        ds = cached(ds, cache_dir, f"{name}-{fingerprint(images, labels)}" if cache_dir else None)
    if training:
        ds = ds.shuffle(int(labels.shape[0]), seed=seed, reshuffle_each_iteration=True)
    ds = to_model_inputs(
        ds.batch(batch_size),
        num_classes,
        seed=seed,
        augment_params=augment_params if training and augment else None,
        damage=damage,
    )
    if prefetch:
        ds = ds.prefetch(AUTOTUNE)
    return with_data_sharding(ds)


def cached(ds: tf.data.Dataset, cache_dir: str | None, file_name: str | None) -> tf.data.Dataset:
    """``ds`` cached in memory, or to ``cache_dir/file_name*`` files."""
    if not cache_dir:
        return ds.cache()
    os.makedirs(cache_dir, exist_ok=True)
    return ds.cache(os.path.join(cache_dir, file_name))


def to_model_inputs(
    ds: tf.data.Dataset, num_classes: int, *, seed: int, augment_params: AugmentParams | None, damage: float = 0.0
) -> tf.data.Dataset:
    """uint8 batches and class ids -> float32 [B, 28, 28, 1] images (augmented when
    ``augment_params`` is given, then a ``damage`` share damaged) and one-hot labels."""

    def to_inputs(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return normalize_tf(x), tf.one_hot(y, num_classes, dtype=tf.float32)

    if augment_params is None:
        return ds.map(to_inputs, num_parallel_calls=AUTOTUNE)
    # One fresh stateless seed per batch, re-drawn every epoch, derived from ``seed``.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def to_augmented(batch: tuple[tf.Tensor, tf.Tensor], batch_seed: tf.Tensor):
        x, y = to_inputs(*batch)
        x = random_affine(x, batch_seed, augment_params)
        if damage > 0:
            x = random_damage(x, tf.random.experimental.stateless_fold_in(batch_seed, 1), damage)
        return x, y

    return tf.data.Dataset.zip((ds, seeds)).map(to_augmented, num_parallel_calls=AUTOTUNE)


def with_data_sharding(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Every worker builds the same seeded pipeline; shard by data (the arrays are in memory)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)
