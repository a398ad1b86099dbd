"""Loader for the four original IDX files of MNIST (and Fashion-MNIST), raw or gzipped.

IDX format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code (0x08 =
unsigned byte), the number of dimensions, then each dimension as a big-endian uint32,
then the data. Images have magic 0x00000803 (3 dims), labels 0x00000801 (1 dim).
"""

from __future__ import annotations

import gzip
import pathlib
import zlib

import numpy as np

from mnist_batch.constants import IMAGE_SHAPE
from mnist_batch.data.arrays import class_names_near, train_validation
from mnist_batch.data.base import Dataset, Split, as_labels, validate_arrays
from mnist_batch.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
    """Finds ``stem`` raw or gzipped (also the ``stem.idx3-ubyte`` spelling some mirrors use)."""
    candidates = [stem, f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for candidate in candidates:
        path = directory / candidate
        if path.is_file():
            return path
    raise DataError(f"{directory}: missing IDX file {stem} (or {stem}.gz)")


def read_idx(path: pathlib.Path, *, magic: int) -> np.ndarray:
    """Reads one IDX file and checks its header against its size.

    Args:
      path: the file, raw or ``.gz``.
      magic: expected magic number, :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`.

    Returns:
      uint8 array of the shape the header declares.

    Raises:
      DataError: unreadable or corrupt gzip, wrong magic, truncated or over-long data.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes)")
    got_magic = int.from_bytes(raw[:4], "big")
    if got_magic != magic:
        raise DataError(f"{path}: wrong magic number 0x{got_magic:08x} (expected 0x{magic:08x})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(raw) - header
    if got < expected:
        raise DataError(f"{path}: truncated data: header declares {dims} = {expected} bytes, file has {got}")
    if got > expected:
        raise DataError(f"{path}: {got - expected} unexpected trailing bytes after {dims} data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(
    directory: str | pathlib.Path, *, name: str | None = None, class_names: tuple[str, ...] | None = None
) -> Dataset:
    """Loads ``train-*`` and ``t10k-*`` IDX files from ``directory``.

    ``class_names`` if given, else a ``classes.txt`` in the directory, sets class names
    (default: the ten digits).

    Returns:
      A :class:`Dataset` with train, validation (1/12 of train, stratified) and test splits.

    Raises:
      DataError: missing directory or file, any problem :func:`read_idx` finds, images not
        28x28, image and label counts that disagree, labels out of range.
    """
    directory = pathlib.Path(directory)
    name = name or f"idx:{directory}"
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    class_names = tuple(class_names) if class_names else class_names_near(directory)
    splits: dict[str, Split] = {}
    for part, (image_stem, label_stem) in IDX_FILES.items():
        image_path, label_path = _find(directory, image_stem), _find(directory, label_stem)
        images = read_idx(image_path, magic=IMAGES_MAGIC)
        labels = read_idx(label_path, magic=LABELS_MAGIC)
        if images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{image_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{image_path}: {images.shape[0]} images but {label_path.name} has {labels.shape[0]} labels"
            )
        labels = as_labels(labels, num_classes=len(class_names), where=str(label_path))
        validate_arrays(images, labels, num_classes=len(class_names), where=str(image_path))
        if part == "train":
            splits.update(train_validation(images, labels))
        else:
            splits["test"] = Split(images, labels)
    return Dataset(name=name, splits=splits, class_names=class_names, source=str(directory))
