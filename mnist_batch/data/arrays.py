"""Shared helpers for array data sets that ship only train and test parts."""

from __future__ import annotations

import pathlib

import numpy as np

from mnist_batch.constants import MNIST_CLASS_NAMES
from mnist_batch.data.base import Split
from mnist_batch.data.split import stratified_split
from mnist_batch.errors import DataError

VALIDATION_FRACTION = 1 / 12
"""Share of the original training part held out for validation (5,000 of MNIST's 60,000)."""

VALIDATION_SEED = 1234


def train_validation(images: np.ndarray, labels: np.ndarray) -> dict[str, Split]:
    """Carves a fixed, stratified validation split out of a training part.

    Args:
      images: uint8 [N, 28, 28].
      labels: uint8 [N].

    Returns:
      ``{"train": Split, "validation": Split}``, the same for the same arrays.
    """
    n = labels.shape[0]
    n_val = round(n * VALIDATION_FRACTION) if n >= 12 else 0
    if n_val == 0:
        return {"train": Split(images, labels)}
    parts = stratified_split(labels, {"train": n - n_val, "validation": n_val}, seed=VALIDATION_SEED)
    return {name: Split(images[idx], labels[idx]) for name, idx in parts.items()}


def read_class_names(path: pathlib.Path) -> tuple[str, ...]:
    """Reads ``classes.txt`` (one class name a line, line i names label i).

    Raises:
      DataError: if the file is empty or has duplicate names.
    """
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read class names ({exc})") from exc
    if len(names) < 2:
        raise DataError(f"{path}: needs at least two class names, one per line")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate class names")
    return names


def class_names_near(directory: pathlib.Path) -> tuple[str, ...]:
    """The names in ``directory/classes.txt`` if present, else the ten digits."""
    path = directory / "classes.txt"
    return read_class_names(path) if path.is_file() else MNIST_CLASS_NAMES
