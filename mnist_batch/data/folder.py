"""Loader for a folder of MNIST-format image files, labelled by their parent folder.

Layouts:

* ``DIR/<label>/<file>.png`` -- every image of the data set; a fixed, stratified
  70 / 10 / 20 % train / validation / test split is made from it.
* ``DIR/{train,validation,test}/<label>/<file>.png`` -- the splits as given (``validation``
  optional).

``<label>`` is a class index (``7``) or a class name from ``DIR/classes.txt``. Without a
``classes.txt`` the labels must be the digits ``0``-``9``. Images must be 28x28 and are
read as grayscale white-on-black (the format ``mnist-batch data export-images`` writes);
use ``mnist-batch score`` for arbitrary scans.
"""

from __future__ import annotations

import pathlib

import numpy as np

from mnist_batch.constants import IMAGE_EXTENSIONS, IMAGE_SHAPE
from mnist_batch.data.arrays import class_names_near
from mnist_batch.data.base import Dataset, Split
from mnist_batch.data.split import stratified_split
from mnist_batch.decoding import ImageDecodeError, decode_image
from mnist_batch.errors import DataError
from mnist_batch.labels import label_from_name

FOLDER_SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
FOLDER_SPLIT_SEED = 4321


def _label_of(folder: str, class_names: tuple[str, ...], where: pathlib.Path) -> int:
    label = label_from_name(folder, class_names)
    if label is not None:
        return label
    raise DataError(
        f"{where}: folder name {folder!r} is not a class (expected 0-{len(class_names) - 1} "
        f"or one of the names in classes.txt)"
    )


def _read_labelled(root: pathlib.Path, class_names: tuple[str, ...]) -> Split:
    images, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _label_of(class_dir.name, class_names, class_dir)
        for path in sorted(class_dir.iterdir()):
            if not path.is_file() or path.suffix.lower().lstrip(".") not in IMAGE_EXTENSIONS:
                continue
            try:
                array = decode_image(path.read_bytes())
            except (OSError, ImageDecodeError) as exc:
                raise DataError(f"{path}: cannot read image ({exc})") from exc
            if array.shape != IMAGE_SHAPE:
                raise DataError(
                    f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected 28x28 "
                    "(folder data sets hold MNIST-format images; score other scans with `mnist-batch score`)"
                )
            images.append(array)
            labels.append(label)
    if not images:
        raise DataError(f"{root}: no images found in <label>/ subfolders")
    return Split(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.uint8))


def load_folder(directory: str | pathlib.Path, *, name: str | None = None) -> Dataset:
    """Loads a labelled folder of 28x28 images (see module docstring for layouts).

    Raises:
      DataError: missing directory, no images, unknown label folder, unreadable or non-28x28 image.
    """
    directory = pathlib.Path(directory)
    name = name or f"folder:{directory}"
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    class_names = class_names_near(directory)
    split_dirs = {s: directory / s for s in ("train", "validation", "test") if (directory / s).is_dir()}
    if split_dirs:
        splits = {s: _read_labelled(d, class_names) for s, d in split_dirs.items()}
    else:
        whole = _read_labelled(directory, class_names)
        n = len(whole)
        sizes = {s: round(f * n) for s, f in FOLDER_SPLIT_FRACTIONS.items()}
        sizes["train"] = n - sizes["validation"] - sizes["test"]
        parts = stratified_split(whole.labels, sizes, seed=FOLDER_SPLIT_SEED)
        splits = {s: Split(whole.images[idx], whole.labels[idx]) for s, idx in parts.items()}
    return Dataset(name=name, splits=splits, class_names=class_names, source=str(directory))
