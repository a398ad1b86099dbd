"""``--class-names``: name the classes of a data set from the command line (comma list or a file)."""

from __future__ import annotations

import dataclasses
import pathlib

from mnist_batch.data.arrays import read_class_names
from mnist_batch.data.base import Dataset
from mnist_batch.errors import DataError


def parse_class_names(value: str) -> tuple[str, ...]:
    """``"a,b,c"`` -> ``("a", "b", "c")``; an existing file is read as ``classes.txt`` (one name a line).

    Raises:
      DataError: fewer than two names, empty or duplicate names.
    """
    if pathlib.Path(value).is_file():
        return read_class_names(pathlib.Path(value))
    names = tuple(n.strip() for n in value.split(","))
    if len(names) < 2 or not all(names):
        raise DataError(f"--class-names {value!r}: give at least two non-empty names, comma-separated, or a file")
    if len(set(names)) != len(names):
        raise DataError(f"--class-names {value!r}: duplicate class names")
    return names


def with_class_names(dataset: Dataset, names: tuple[str, ...]) -> Dataset:
    """The same data set with ``names``; their count must equal the data set's class count.

    Raises:
      DataError: naming both counts.
    """
    if len(names) != dataset.num_classes:
        raise DataError(f"--class-names gives {len(names)} names but {dataset.name} has {dataset.num_classes} classes")
    return dataclasses.replace(dataset, class_names=tuple(names))
