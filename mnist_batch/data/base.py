"""The one structure every loader returns, and its validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from mnist_batch.constants import IMAGE_SHAPE, SPLITS
from mnist_batch.errors import DataError


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of an array data set.

    Attributes:
      images: uint8 [N, 28, 28], white ink on black (MNIST format).
      labels: uint8 [N], class ids in ``[0, len(class_names))``.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image data set split into train / validation / test.

    Attributes:
      name: the spec it was loaded from, e.g. ``"sample"`` or ``"idx:/data/fashion"``.
      splits: mapping split name (one of :data:`~mnist_batch.constants.SPLITS`) -> :class:`Split`.
      class_names: names of the classes; index i names label i.
      source: one line on where the data came from (file, package, licence).
    """

    name: str
    splits: Mapping[str, Split]
    class_names: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        for split_name, split in self.splits.items():
            if split_name not in SPLITS:
                raise DataError(f"{self.name}: unknown split {split_name!r} (expected one of {SPLITS})")
            validate_arrays(
                split.images,
                split.labels,
                num_classes=len(self.class_names),
                where=f"{self.name} [{split_name}]",
            )

    def split(self, name: str) -> Split:
        """Returns the split called ``name``; a :class:`DataError` names the ones that exist."""
        if name not in self.splits:
            raise DataError(f"{self.name}: no split {name!r}; it has {', '.join(self.splits)}")
        return self.splits[name]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, list[int]]:
        """Examples per class for each split: ``{split: [count of class 0, ...]}``."""
        return {
            name: np.bincount(split.labels, minlength=self.num_classes).astype(int).tolist()
            for name, split in self.splits.items()
        }


def validate_arrays(images: np.ndarray, labels: np.ndarray, *, num_classes: int, where: str) -> None:
    """Checks dtype, shape, count agreement and label range of one split.

    Args:
      images: expected uint8 [N, 28, 28].
      labels: expected uint8 [N].
      num_classes: labels must lie in ``[0, num_classes)``.
      where: file or data set name put in front of the error message.

    Raises:
      DataError: naming ``where`` and the first problem found.
    """
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8")
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (N,)")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    check_labels(labels, num_classes=num_classes, where=where)


def check_labels(labels: np.ndarray, *, num_classes: int, where: str) -> None:
    """Integer labels [N] within ``[0, num_classes)``, or a DataError naming ``where`` and the first bad one."""
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (N,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise DataError(
            f"{where}: label {int(bad[0])} out of range [0, {num_classes - 1}] ({bad.size} label(s) out of range)"
        )


def as_labels(labels: np.ndarray, *, num_classes: int, where: str) -> np.ndarray:
    """Converts integer labels of any width to uint8 after a range check."""
    labels = np.asarray(labels)
    check_labels(labels, num_classes=num_classes, where=where)
    return labels.astype(np.uint8)
