"""Same inputs, same tables: ``mnist-batch score`` from two checkouts, its tables compared row for row.

For a change that must not change behaviour (a refactor): each checkout scores the same input into
its own output (flat, or ``--layout runs --incremental`` with ``--runs``), alternated ``--repeat``
times (the wall time of each, start to exit); then every table of the last outputs is read back
through this checkout's run store and compared after sorting by path, ignoring the columns that
differ by design (``run_id``, ``scored_at``). Exit 1 when any table differs.

Usage (local disk, then a bucket of ``make s3-up`` with its AWS_* variables set):
  git worktree add --detach /tmp/before HEAD~5
  .venv/bin/python benchmarks/bench_equivalence.py --model M.keras --input scans/ \\
      --output-base /tmp/eq before=/tmp/before after=.
  .venv/bin/python benchmarks/bench_equivalence.py --model M.keras --input s3://mnist-batch/eq/scans/ \\
      --output-base s3://mnist-batch/eq --runs before=/tmp/before after=.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnist_batch.runstore import fs, shards  # noqa: E402

TABLES = ("predictions", "errors", "skipped")
BY_DESIGN = ("run_id", "scored_at")


def score(tree: str, model: str, source: str, out: str, runs: bool) -> float:
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(tree).resolve()), "TF_CPP_MIN_LOG_LEVEL": "3"}
    layout = ["--layout", "runs", "--incremental"] if runs else ["--overwrite"]
    command = [sys.executable, "-m", "mnist_batch", "score", "--model", model, "--input", source]
    command += ["--output", out, "--run-id", "eq", "-q", *layout]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{tree}: score exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def table(out: str, name: str):
    import pyarrow as pa

    paths = [p for p in fs.list_files(out) if f"/{name}/" in p and p.endswith(".parquet") and "_staging" not in p]
    if not paths:
        return None
    read = pa.concat_tables([shards.read_shard(p) for p in paths], promote_options="default")
    return read.drop_columns([c for c in BY_DESIGN if c in read.column_names]).sort_by("path")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output-base", required=True)
    parser.add_argument("--runs", action="store_true", help="--layout runs --incremental (else a flat output)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("labels", nargs=2, help="NAME=CHECKOUT")
    args = parser.parse_args()
    fs.configure()
    labels = dict(label.split("=", 1) for label in args.labels)
    times: dict[str, list[float]] = {name: [] for name in labels}
    for _ in range(args.repeat):
        for name, tree in labels.items():
            out = fs.join(args.output_base, f"out-{name}")
            fs.delete_tree(out)
            times[name].append(score(tree, args.model, args.input, out, args.runs))
    for name, seconds in times.items():
        print(
            f"{name:>8}: min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s over {len(seconds)} runs"
        )
    first, second = (fs.join(args.output_base, f"out-{name}") for name in labels)
    differs = 0
    for name in TABLES:
        a, b = table(first, name), table(second, name)
        same = (a is None and b is None) or (a is not None and b is not None and a.equals(b))
        rows = "-" if a is None else f"{a.num_rows:,} rows"
        print(f"{name:>12}: {rows}, {'identical' if same else 'DIFFERENT'} (ignoring {', '.join(BY_DESIGN)})")
        differs += not same
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
