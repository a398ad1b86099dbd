"""The in-process job's own per-file work, alone in one process: its listing, its read of each file,
and its predictions rows and their statistics at two table sizes (the job's 4,096 rows a table against
one table a group of 256).

Usage:
  python benchmarks/bench_rows.py --folder .cache/bm/files_200000      # a folder of PNGs (bench_score makes them)
  cd /tmp/before && PYTHONPATH=$PWD python /path/to/bench_rows.py --folder F   # the same on older code (a worktree)

Prints µs per file (listing: ``inprocess.engine.list_entries`` as the job lists one ``--input``
folder; read: ``files.read_local`` of its first 20,000 files, as the decode step reads each) and µs per row (``aggregate.predictions_chunk`` + ``PredictionStats.add_input`` on random
probabilities of 11 outputs, labels from ten folders), each the best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time


def listing_us(folder: str) -> tuple[int, float]:
    """Files listed and µs a file for the job's listing of ``folder`` (its ``folder/**`` pattern)."""
    from mnist_batch.inprocess.engine import list_entries
    from mnist_batch.inprocess.job import Tally, listed_files
    from mnist_batch.scoring.read import expand_inputs

    patterns = expand_inputs([folder])
    start = time.perf_counter()
    n = sum(1 for _ in listed_files(list_entries(patterns, ["png"], "/nonexistent-output"), Tally.new(10)))
    return n, 1e6 * (time.perf_counter() - start) / max(n, 1)


def read_us(folder: str, files: int = 20_000) -> float:
    """µs a file for ``files.read_local`` (bounded, regular files only) of the first ``files`` files listed."""
    import itertools
    import os

    from mnist_batch.files import read_local

    paths = list(itertools.islice((os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs), files))
    start = time.perf_counter()
    for path in paths:
        read_local(path, 10_000_000)
    return 1e6 * (time.perf_counter() - start) / max(len(paths), 1)


def rows_us(rows: int, total: int = 102_400) -> tuple[float, float]:
    """µs a row to build predictions tables of ``rows`` rows, and to count them (``total`` rows in all)."""
    import numpy as np

    from mnist_batch.scoring.aggregate import ImageKey, PredictionStats, predictions_table
    from mnist_batch.scoring.labels import LabelLookup

    try:
        from mnist_batch.scoring.aggregate import predictions_chunk
    except ImportError:  # the code before issue 36's fourth session (run with --code): a key object per file

        def predictions_chunk(paths, true_labels, blank, probabilities, **fields):
            keys = [ImageKey(p, t, bool(b)) for p, t, b in zip(paths, true_labels, blank, strict=True)]
            return predictions_table(keys, probabilities, **fields)

    names = tuple(str(d) for d in range(10))
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(11), rows).astype(np.float32)
    paths = [f"/scans/{i * 10 // rows}/{i:07d}.png" for i in range(rows)]
    blank = np.zeros(rows, bool)
    labels = LabelLookup(names)
    fields = {
        "class_names": names,
        "model_id": "m" * 64,
        "run_id": "r",
        "review_threshold": 0.9,
        "scored_at": datetime.datetime.now(datetime.UTC),
        "not_digit_threshold": 0.04,
        "runtime_model_id": "x" * 64,
    }
    stats = PredictionStats(10)
    acc = stats.create_accumulator()
    reps = max(total // rows, 1)
    start = time.perf_counter()
    for _ in range(reps):
        table = predictions_chunk(paths, [labels(p) for p in paths], blank, probabilities, **fields)
    built = time.perf_counter()
    for _ in range(reps):
        stats.add_input(acc, table)
    done = time.perf_counter()
    return 1e6 * (built - start) / (reps * rows), 1e6 * (done - built) / (reps * rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="a folder of PNG files to list")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows_us(256, 4096)  # warm: pyarrow's compute kernels are set up on first use
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        n, listing = listing_us(args.folder)
        best["listing"] = min(best.get("listing", listing), listing)
        best["read"] = min(best.get("read", float("inf")), read_us(args.folder))
        for size in (256, 4096):
            table, stats = rows_us(size)
            best[f"table_{size}"] = min(best.get(f"table_{size}", table), table)
            best[f"stats_{size}"] = min(best.get(f"stats_{size}", stats), stats)
    print(f"listing {n:,} files: {best['listing']:.2f} µs a file")
    print(f"reading a file (read_local): {best['read']:.2f} µs a file")
    for size in (256, 4096):
        total = best[f"table_{size}"] + best[f"stats_{size}"]
        print(
            f"{size:>5} rows a table: rows {best[f'table_{size}']:.2f} + statistics {best[f'stats_{size}']:.3f} "
            f"= {total:.2f} µs a row"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
