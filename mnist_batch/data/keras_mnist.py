"""The full MNIST (60k train / 10k test) from the standard Keras URL, with its cache.

Needs internet on first use; afterwards the file is read from the Keras cache
(``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras/datasets/mnist.npz``) after its
sha256 is checked. Offline? Put a copy of ``mnist.npz`` there, or use ``npz:/path/to/mnist.npz``.
"""

from __future__ import annotations

import pathlib

from mnist_batch.data.base import Dataset
from mnist_batch.data.npz import load_npz
from mnist_batch.errors import DataError

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
MNIST_FILENAME = "mnist.npz"


def load_keras_mnist(*, cache_dir: str | pathlib.Path | None = None) -> Dataset:
    """Downloads (once) and loads the full MNIST data set.

    Args:
      cache_dir: the Keras cache root (default: ``$KERAS_HOME`` or ``~/.keras``); the file
        lives in its ``datasets/`` folder.

    Returns:
      A :class:`Dataset` with train (55,000), validation (5,000) and test (10,000) splits.

    Raises:
      DataError: the download failed (with the offline alternatives in the message).
    """
    import keras  # Imported here: only this loader needs it, and it loads TensorFlow.

    try:
        path = keras.utils.get_file(
            fname=MNIST_FILENAME,
            origin=MNIST_URL,
            file_hash=MNIST_SHA256,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except Exception as exc:
        raise DataError(
            f"{MNIST_URL}: download failed ({exc}). Offline? Copy mnist.npz into the Keras cache "
            "(~/.keras/datasets/) or pass --dataset npz:/path/to/mnist.npz"
        ) from exc
    return load_npz(path, name="mnist")
