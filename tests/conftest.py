"""Shared fixtures: small generated data sets in the formats the loaders read."""

from __future__ import annotations

import gzip
import os
import pathlib
import subprocess

import numpy as np
import pytest
from browser import chromium  # noqa: F401 -- the session fixture of the page tests (tests/browser.py)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encodes a uint8 array as an IDX file with the given magic number."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_arrays(n: int, seed: int = 0, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images [n, 28, 28] and labels [n] covering every class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    return images, labels


def write_idx_dir(directory: pathlib.Path, *, n_train=60, n_test=20, gz=False, seed=0) -> dict:
    """Writes the four MNIST IDX files; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    x_train, y_train = make_arrays(n_train, seed)
    x_test, y_test = make_arrays(n_test, seed + 1)
    files = {
        "train-images-idx3-ubyte": idx_bytes(x_train, 0x803),
        "train-labels-idx1-ubyte": idx_bytes(y_train, 0x801),
        "t10k-images-idx3-ubyte": idx_bytes(x_test, 0x803),
        "t10k-labels-idx1-ubyte": idx_bytes(y_test, 0x801),
    }
    for name, data in files.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (directory / name).write_bytes(data)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_npz(path: pathlib.Path, *, n_train=60, n_test=20, seed=0, **overrides) -> dict:
    """Writes a Keras-layout mnist.npz; keyword overrides replace or add arrays."""
    x_train, y_train = make_arrays(n_train, seed)
    x_test, y_test = make_arrays(n_test, seed + 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture(scope="session")
def sample():
    from mnist_batch.data import load_dataset

    return load_dataset("sample")


RUNNER_COMMANDS = ("mnist_batch", "mnist-batch", "pipelines/", "local_job_service_main", "worker_pool_main", "airflow")
"""Words of a command line that starts the CLI, a pipeline entry point or a runner in another process."""
HELPERS = ("mnist_batch.scoring.decode_pool", "mnist_batch.inprocess.count")
"""Processes the code under test starts itself (the decode helper, the progress count): not a runner."""


def starts_a_runner(args) -> bool:
    """Whether a subprocess command line (list or string) runs the CLI, an entry point or a runner."""
    words = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    text = " ".join(os.fsdecode(w) for w in words)
    return any(w in text for w in RUNNER_COMMANDS) and not any(h in text for h in HELPERS)


@pytest.fixture(autouse=True)
def fast_tests_start_no_runner(request, monkeypatch):
    """The fast tier's promise (``make test-fast``): a test not marked ``slow`` starts no CLI or runner process.

    Such a test fails at the ``subprocess`` call, naming the marker to add.
    """
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("cluster"):
        return
    original = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        if starts_a_runner(args):
            raise AssertionError(
                f"{request.node.nodeid} starts a runner process ({args!r}): mark it @pytest.mark.slow "
                "(make test-fast runs only tests that do not)"
            )
        original(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
