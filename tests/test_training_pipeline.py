"""The tf.data input pipeline: shapes, batching, shuffling, augmentation, cache, bad input."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from mnist_batch.config import TrainConfig  # noqa: E402
from mnist_batch.errors import DataError  # noqa: E402
from mnist_batch.preprocess import normalize  # noqa: E402
from mnist_batch.training.augment import AugmentParams, random_affine  # noqa: E402
from mnist_batch.training.pipeline import check_arrays, global_batch_size, make_dataset, normalize_tf  # noqa: E402


def arrays(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_shapes_dtypes_and_batches():
    images, labels = arrays(50)
    ds = make_dataset(images, labels, num_classes=10, batch_size=16, training=True, seed=1)
    batches = list(ds)
    assert [int(x.shape[0]) for x, _ in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.dtype == tf.float32 and tuple(x.shape[1:]) == (28, 28, 1)
    assert y.dtype == tf.float32 and tuple(y.shape) == (16, 10)
    xs, ys = collect(ds)
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert sorted(ys.argmax(1).tolist()) == sorted(labels.tolist())  # every example once per epoch


def test_global_batch_size_multiplies_replicas():
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    assert global_batch_size(32, strategy) == 32 * strategy.num_replicas_in_sync
    assert global_batch_size(32) == 32

    class FakeStrategy:
        num_replicas_in_sync = 4

    assert global_batch_size(32, FakeStrategy()) == 128
    with pytest.raises(ValueError, match="batch_size"):
        global_batch_size(0)


def test_eval_pipeline_is_ordered_unaugmented_and_bit_identical_to_scoring(sample):
    """Training-side inputs for the whole sample test split equal the scoring side's normalize()."""
    test = sample.splits["test"]
    ds = make_dataset(test.images, test.labels, num_classes=10, batch_size=256, training=False)
    xs, ys = collect(ds)
    expected = normalize(test.images)
    assert xs.dtype == expected.dtype == np.float32
    assert xs.shape == expected.shape
    assert np.array_equal(xs.view(np.uint32), expected.view(np.uint32))  # bit-identical, not just close
    assert np.array_equal(ys.argmax(1), test.labels)  # not shuffled
    again, _ = collect(ds)
    assert np.array_equal(again, xs)  # no augmentation, same every epoch


def test_normalize_tf_matches_numpy_for_every_byte():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    padded = np.zeros((1, 28, 28), np.uint8)
    padded[0, :16, :16] = values
    assert np.array_equal(normalize_tf(tf.constant(padded)).numpy(), normalize(padded))


def test_training_pipeline_reshuffles_each_epoch_and_repeats_with_seed():
    images, labels = arrays(64)
    ds = make_dataset(images, labels, num_classes=10, batch_size=64, training=True, augment=False, seed=3)
    first, second = (collect(ds)[1].argmax(1) for _ in range(2))
    assert not np.array_equal(first, second)  # reshuffled
    assert sorted(first.tolist()) == sorted(second.tolist())
    same = make_dataset(images, labels, num_classes=10, batch_size=64, training=True, augment=False, seed=3)
    assert np.array_equal(collect(same)[1].argmax(1), first)  # seeded: repeatable
    # Without augmentation every training image is an exact normalised input image.
    xs, ys = collect(ds)
    lookup = {normalize(img[None])[0].tobytes(): lab for img, lab in zip(images, labels, strict=True)}
    assert all(lookup[x.tobytes()] == y.argmax() for x, y in zip(xs, ys, strict=True))


def test_augmentation_changes_training_images_only():
    images, labels = arrays(32)
    aug = make_dataset(images, labels, num_classes=10, batch_size=32, training=True, augment=True, seed=5)
    xs, _ = collect(aug)
    originals = {normalize(img[None])[0].tobytes() for img in images}
    assert sum(x.tobytes() in originals for x in xs) == 0
    assert xs.min() >= 0.0 and xs.max() <= 1.0 + 1e-6


def test_random_affine_is_seeded_and_moves_a_dot_within_range():
    image = np.zeros((64, 28, 28, 1), np.float32)
    image[:, 14, 14, 0] = 1.0
    seed = tf.constant([1, 2], tf.int64)
    out = random_affine(tf.constant(image), seed).numpy()
    assert np.array_equal(out, random_affine(tf.constant(image), seed).numpy())
    assert not np.array_equal(out, random_affine(tf.constant(image), tf.constant([3, 4], tf.int64)).numpy())
    # The dot's centre of mass moves at most shift (2 px) + rotation/zoom about the centre (<1 px).
    ys, xs = np.mgrid[0:28, 0:28]
    mass = out[..., 0].sum(axis=(1, 2))
    cy = (out[..., 0] * ys).sum(axis=(1, 2)) / mass
    cx = (out[..., 0] * xs).sum(axis=(1, 2)) / mass
    assert np.all(np.abs(cy - 14) <= 3.0) and np.all(np.abs(cx - 14) <= 3.0)
    assert np.abs(cx - 14).max() > 0.5  # something moved


def test_file_cache(tmp_path):
    images, labels = arrays(20)
    ds = make_dataset(images, labels, num_classes=10, batch_size=8, training=False, cache_dir=str(tmp_path), name="val")
    first, _ = collect(ds)
    assert any(p.name.startswith("val") for p in tmp_path.iterdir())
    second, _ = collect(ds)
    assert np.array_equal(first, second)
    # Different data under the same name gets its own cache files, never the stale ones.
    other, other_labels = arrays(20, seed=9)
    ds2 = make_dataset(
        other, other_labels, num_classes=10, batch_size=8, training=False, cache_dir=str(tmp_path), name="val"
    )
    assert np.array_equal(collect(ds2)[0], normalize(other))


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8), "empty"),
        (np.zeros((4, 32, 32), np.uint8), np.zeros((4,), np.uint8), r"expected \(N, 28, 28\)"),
        (np.zeros((4, 28, 28), np.float32), np.zeros((4,), np.uint8), "uint8"),
        (np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 10, 2], np.uint8), "label 10 out of range"),
        (np.zeros((4, 28, 28), np.uint8), np.array([0, 1, -1, 2], np.int64), "label -1 out of range"),
        (np.zeros((4, 28, 28), np.uint8), np.zeros((3,), np.uint8), "4 images but 3 labels"),
    ],
)
def test_bad_arrays_are_refused(images, labels, message):
    with pytest.raises(DataError, match=message):
        check_arrays(images, labels, num_classes=10, where="train")
    with pytest.raises(DataError, match=message):
        make_dataset(images, labels, num_classes=10, batch_size=4, training=True)


def test_random_affine_flip_mirrors_about_half_and_nothing_else():
    rng = np.random.default_rng(0)
    images = rng.random((64, 28, 28, 1)).astype(np.float32)
    params = AugmentParams(max_shift=0.0, max_rotation_deg=0.0, max_zoom=0.0, flip=True)
    out = random_affine(tf.constant(images), tf.constant([5, 6], tf.int64), params).numpy()
    same = np.all(np.isclose(out, images, atol=1e-5), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, images[:, :, ::-1], atol=1e-5), axis=(1, 2, 3))
    assert np.all(same ^ mirrored)  # each image is either untouched or exactly mirrored
    assert 16 <= mirrored.sum() <= 48
    # Without flip the same ranges leave every image as it was.
    plain = random_affine(tf.constant(images), tf.constant([5, 6], tf.int64), AugmentParams(0.0, 0.0, 0.0)).numpy()
    assert np.allclose(plain, images, atol=1e-5)


def test_flip_needs_augment():
    with pytest.raises(ValueError, match="flip"):
        TrainConfig(augment=False, flip=True)
