"""Data set loaders. Every loader returns a :class:`Dataset` of uint8 28x28 images.

Data set specs, as the CLI takes them:

========================  =====================================================
``sample``                the bundled 10,000 real MNIST digits (default, offline)
``npz:PATH``              a Keras-layout ``mnist.npz`` file
``idx:DIR``               the four original IDX files, raw or ``.gz``
``folder:DIR``            ``DIR/<label>/*.png`` (or ``DIR/<split>/<label>/*.png``)
``mnist``                 full MNIST from the Keras URL, cached (needs internet once)
``fashion-mnist[:DIR]``   Fashion-MNIST IDX files with their class names (default DIR
                          /usr/share/datasets/fashion-mnist, Debian ``dataset-fashion-mnist``)
========================  =====================================================
"""

from __future__ import annotations

from mnist_batch.data.base import Dataset, Split
from mnist_batch.data.fashion import load_fashion_mnist
from mnist_batch.data.folder import load_folder
from mnist_batch.data.idx import load_idx
from mnist_batch.data.keras_mnist import load_keras_mnist
from mnist_batch.data.npz import load_npz
from mnist_batch.data.sample import load_sample
from mnist_batch.errors import DataError

DATASET_SPECS = ("sample", "npz:PATH", "idx:DIR", "folder:DIR", "mnist", "fashion-mnist[:DIR]")

__all__ = ["DATASET_SPECS", "Dataset", "Split", "load_dataset"]


def load_dataset(spec: str) -> Dataset:
    """Loads the data set named by ``spec`` (see the module docstring).

    Raises:
      DataError: unknown spec, or any problem the loader finds, naming the file.
    """
    kind, sep, arg = spec.partition(":")
    if not sep:
        if spec == "sample":
            return load_sample()
        if spec == "mnist":
            return load_keras_mnist()
        if spec == "fashion-mnist":
            return load_fashion_mnist(name=spec)
    elif arg:
        if kind == "npz":
            return load_npz(arg, name=spec)
        if kind == "idx":
            return load_idx(arg, name=spec)
        if kind == "folder":
            return load_folder(arg, name=spec)
        if kind == "fashion-mnist":
            return load_fashion_mnist(arg, name=spec)
    raise DataError(f"unknown data set {spec!r}; expected one of: {', '.join(DATASET_SPECS)}")
