"""Fashion-MNIST (Zalando's 28x28 clothing images) from its four IDX files, with its class names.

Spec ``fashion-mnist`` reads ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist`` package); ``fashion-mnist:DIR`` reads the same four files elsewhere.
Labels and pixels are in MNIST format, so every loader, model and scorer works unchanged; only
the class names differ, and they travel into the model card and from there into every output.
"""

from __future__ import annotations

import dataclasses
import pathlib

from mnist_batch.data.base import Dataset
from mnist_batch.data.idx import load_idx
from mnist_batch.errors import DataError

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` installs the IDX files."""

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The official label names (github.com/zalandoresearch/fashion-mnist); label i is entry i."""


def load_fashion_mnist(directory: str | pathlib.Path | None = None, *, name: str | None = None) -> Dataset:
    """Loads Fashion-MNIST: 55,000 train / 5,000 validation (stratified) / 10,000 test.

    Args:
      directory: folder with the four IDX files (default :data:`FASHION_MNIST_DIR`).
      name: data set name to record (default the spec).

    Raises:
      DataError: directory missing (with the apt-get hint) or any IDX problem.
    """
    directory = pathlib.Path(directory) if directory else FASHION_MNIST_DIR
    if not directory.is_dir():
        hint = " (install it with: apt-get install dataset-fashion-mnist)" if directory == FASHION_MNIST_DIR else ""
        raise DataError(f"{directory}: no such directory{hint}")
    loaded = load_idx(directory, name=name or f"fashion-mnist:{directory}", class_names=FASHION_MNIST_CLASS_NAMES)
    return dataclasses.replace(loaded, source=f"{directory} (Fashion-MNIST, Zalando Research, MIT licence)")
