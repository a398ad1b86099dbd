"""Loader for a local ``.npz`` in the Keras ``mnist.npz`` layout.

This is the file users fall back to when the download is blocked: put the file anywhere
and pass ``npz:/path/to/mnist.npz``. Keys: ``x_train`` uint8 [N, 28, 28], ``y_train`` [N],
``x_test`` uint8 [M, 28, 28], ``y_test`` [M]. A ``classes.txt`` beside the file sets class names.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from mnist_batch.data.arrays import class_names_near, train_validation
from mnist_batch.data.base import Dataset, Split, as_labels, validate_arrays
from mnist_batch.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | pathlib.Path, *, name: str | None = None) -> Dataset:
    """Loads a Keras-layout ``.npz`` file.

    Args:
      path: the ``.npz`` file.
      name: data set name to report (default ``npz:PATH``).

    Returns:
      A :class:`Dataset` with train (the first 11/12 of ``x_train``, stratified), validation and
      test (``x_test``) splits.

    Raises:
      DataError: missing or corrupt file, missing keys, bad shapes or dtypes, counts that
        disagree, labels out of range.
    """
    path = pathlib.Path(path)
    name = name or f"npz:{path}"
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    class_names = class_names_near(path.parent)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)}; expected the Keras mnist.npz layout "
                    f"({', '.join(NPZ_KEYS)}), found {', '.join(npz.files) or 'nothing'}"
                )
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    splits = {}
    for part, x_key, y_key in (("train", "x_train", "y_train"), ("test", "x_test", "y_test")):
        where = f"{path} [{x_key}/{y_key}]"
        images = arrays[x_key]
        if images.dtype != np.uint8:
            raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8")
        labels = as_labels(arrays[y_key], num_classes=len(class_names), where=where)
        validate_arrays(images, labels, num_classes=len(class_names), where=where)
        if part == "train":
            splits.update(train_validation(images, labels))
        else:
            splits["test"] = Split(images, labels)
    return Dataset(name=name, splits=splits, class_names=class_names, source=str(path))
