"""stratified_split: exact sizes, disjoint, stratified, deterministic."""

import numpy as np
import pytest

from mnist_batch.data.split import stratified_split


def test_sizes_exact_disjoint_and_deterministic():
    labels = np.repeat(np.arange(10), [50, 61, 47, 52, 49, 43, 51, 54, 47, 46])
    sizes = {"train": 350, "validation": 50, "test": 100}
    a = stratified_split(labels, sizes, seed=7)
    b = stratified_split(labels, sizes, seed=7)
    assert {k: len(v) for k, v in a.items()} == sizes
    assert np.unique(np.concatenate(list(a.values()))).size == labels.size
    for k in sizes:
        np.testing.assert_array_equal(a[k], b[k])
    c = stratified_split(labels, sizes, seed=8)
    assert not np.array_equal(a["test"], c["test"])


def test_each_part_keeps_class_proportions():
    labels = np.repeat(np.arange(3), [600, 300, 100])
    parts = stratified_split(labels, {"a": 700, "b": 300}, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[parts["b"]]), [180, 90, 30])


def test_sizes_must_sum_to_n():
    with pytest.raises(ValueError, match="sum to 9, expected 10"):
        stratified_split(np.zeros(10, dtype=int), {"a": 5, "b": 4}, seed=0)
