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
from mnist_batch.data.registry import DATASET_SPECS, SOURCES, image_folder, load_dataset, parse_spec

__all__ = ["DATASET_SPECS", "SOURCES", "Dataset", "Split", "image_folder", "load_dataset", "parse_spec"]
