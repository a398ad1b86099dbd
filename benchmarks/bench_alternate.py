"""Before and after on a noisy machine: ``mnist-batch score`` from several checkouts, alternated.

One run of each label in turn, ``--repeat`` rounds, each its own process timed from start to exit
(what a user waits for), then min and median per label. Alternating spreads a neighbour's load over
every label alike; compare minimums and medians, not single runs. Labels:

  NAME=PATH     ``python -m mnist_batch score`` with the package of the checkout at PATH
                (e.g. a ``git worktree`` of the commit before a change; its PYTHONPATH goes first);
  NAME=PATH:off the same with the decode helper turned off (``MNIST_BATCH_DECODE_HELPERS=0``);
  loop          the hand-written same-runtime loop of bench_score.py (a'), for a ratio.

Files: ``--files N`` PNGs hard-linked into ``--work`` (bench_score's folders; made when missing).

Usage:
  git worktree add --detach /tmp/before HEAD~1
  .venv/bin/python benchmarks/bench_alternate.py --model out/demo/models/cnn.keras --files 5000 \\
      --repeat 6 before=/tmp/before after=.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_score import ensure_fast_runtime, make_folder  # noqa: E402


def command(label: str, target: str, model: str, folder: pathlib.Path, out: pathlib.Path) -> tuple[list[str], dict]:
    """The command line and environment of one label's run."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if label == "loop":
        cmd = [sys.executable, str(HERE / "bench_score.py"), "--worker", "litert", "--model", model]
        return [*cmd, "--folder", str(folder), "--out", str(out / "loop.parquet")], env
    path, _, flag = target.partition(":")
    checkout = str(pathlib.Path(path).resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH")) if p)
    if flag == "off":
        env["MNIST_BATCH_DECODE_HELPERS"] = "0"
    cmd = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", str(folder)]
    return [*cmd, "--output", str(out / label), "--layout", "runs", "-q"], env


def timed(cmd: list[str], env: dict, cwd: str) -> float:
    """Seconds from start to exit (a failed run stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", nargs="+", help="NAME=PATH[:off] or loop")
    parser.add_argument("--model", required=True, help="an exported .keras model with its card")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", default=".cache/bm", help="folder for the files and outputs (kept)")
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work).resolve()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mnist_batch.data import load_dataset
    from mnist_batch.data.export import export_images

    source = work / "export"
    if not (source / "EXPORT.json").is_file():
        export_images(load_dataset("sample"), "test", source, overwrite=True)
    folder = work / f"files_{args.files}"
    make_folder(source, folder, args.files)
    given = pathlib.Path(args.model).resolve()
    model = str(given if given.parent == work / "cnn" else ensure_fast_runtime(given, work / "cnn"))
    labels = [(spec, "") if spec == "loop" else tuple(spec.split("=", 1)) for spec in args.labels]
    times: dict[str, list[float]] = {label: [] for label, _ in labels}
    out = work / "alternate_out"
    for round_ in range(args.repeat):
        for label, target in labels:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            cwd = str(pathlib.Path(target.partition(":")[0]).resolve()) if target else str(REPO)
            times[label].append(timed(*command(label, target, model, folder, out), cwd))
            print(f"round {round_ + 1}/{args.repeat} {label}: {times[label][-1]:.2f} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\n{args.files:,} files, {args.repeat} rounds, alternated\n")
    print("| label | min s | median s | runs (s) |")
    print("| --- | ---: | ---: | --- |")
    for label, got in times.items():
        runs = ", ".join(f"{t:.2f}" for t in got)
        print(f"| {label} | {min(got):.2f} | {statistics.median(got):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
