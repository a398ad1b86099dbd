"""Deterministic, stratified splitting of a labelled array data set (numpy only)."""

from __future__ import annotations

import numpy as np


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``counts`` (largest remainder).

    Args:
      counts: int array [C], examples per class.
      total: how many examples to allocate in all; ``0 <= total <= counts.sum()``.

    Returns:
      int array [C] summing exactly to ``total``, each entry ``<= counts``.
    """
    exact = counts * (total / counts.sum())
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    for c in order[: total - int(alloc.sum())]:
        alloc[c] += 1
    return np.minimum(alloc, counts)


def stratified_split(labels: np.ndarray, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Split indices into disjoint, class-stratified parts of exact sizes.

    The same labels, sizes and seed always give the same indices.

    Args:
      labels: int array [N] of class ids.
      sizes: ordered mapping part name -> number of examples; the sizes must sum to N.
      seed: seed of the permutation within each class.

    Returns:
      Mapping part name -> sorted int64 index array into ``labels``.

    Raises:
      ValueError: if the sizes do not sum to N.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if sum(sizes.values()) != n:
        raise ValueError(f"split sizes {sizes} sum to {sum(sizes.values())}, expected {n}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    remaining = np.array([pools[c].size for c in classes], dtype=np.int64)
    names = list(sizes)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    taken = np.zeros_like(remaining)
    for i, name in enumerate(names):
        alloc = remaining - taken if i == len(names) - 1 else _allocate(remaining - taken, sizes[name])
        for j, c in enumerate(classes):
            out[name].append(pools[c][taken[j] : taken[j] + alloc[j]])
        taken += alloc
    return {name: np.sort(np.concatenate(parts)).astype(np.int64) for name, parts in out.items()}
