"""Start-up of `mnist-batch score` on a few files: the scoring-only install against the full one.

Alternates the two installs (and the full install's keras runtime, which imports TensorFlow) over
``--rounds`` rounds and reports min and median wall time per variant, with each venv's size.

    .venv/bin/python benchmarks/bench_startup_install.py --model out/demo/models/cnn.keras \
        --slim .cache/slim/venv --full .venv --files 20 --rounds 5
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def venv_mb(venv: pathlib.Path) -> float:
    return sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def write_inputs(folder: pathlib.Path, n: int) -> None:
    from PIL import Image

    from mnist_batch.data import load_dataset

    test = load_dataset("sample").split("test")
    for i in range(n):
        (folder / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(folder / str(test.labels[i]) / f"{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a .keras model exported with its .tflite")
    ap.add_argument("--slim", default=".cache/slim/venv")
    ap.add_argument("--full", default=".venv")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_startup_"))
    write_inputs(work / "in", args.files)
    variants = {
        "slim (litert)": (pathlib.Path(args.slim), []),
        "full (litert)": (pathlib.Path(args.full), []),
        "full (--runtime keras)": (pathlib.Path(args.full), ["--runtime", "keras"]),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (venv, extra) in variants.items():
            command = [str(venv / "bin" / "mnist-batch"), "score", "-q", "--model", args.model, "--input",
                       str(work / "in"), "--output", str(work / "out"), "--overwrite", *extra]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    print(f"{args.files} files, {args.rounds} alternated rounds")
    print(f"{'variant':26s} {'venv MB':>8s} {'min s':>7s} {'median s':>9s}")
    for name, (venv, _) in variants.items():
        t = times[name]
        print(f"{name:26s} {venv_mb(venv):8.0f} {min(t):7.2f} {statistics.median(t):9.2f}")


if __name__ == "__main__":
    main()
