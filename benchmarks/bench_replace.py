"""What a reader sees while a committed run is replaced (``score --layout runs --replace``).

Scores N real digits (the bundled test split, PNG) into a runs root as run ``nightly``, then
replaces that run R times with the real CLI while a reader counts the rows of
``ROOT/predictions`` in a tight loop, once per reader (pyarrow, DuckDB, Polars, where installed).
Every pass of a reader is classified:

  ok        exactly N rows (the old run or the new one: both hold N rows)
  zero      0 rows (the run missing)
  both      2N rows (the old and the new run at once)
  other     any other count
  missing   FileNotFoundError / "No files found" (a file listed, then gone before it was read)
  error     any other exception

and the longest stretch of consecutive bad passes is reported in milliseconds. With
``--baseline-src DIR`` (a checkout of an older commit) the same is measured for that code in
the same run, so before and after come from one machine state.

Usage:
  python benchmarks/bench_replace.py                                   # 200 files, 3 replaces per reader
  git worktree add /tmp/before ece4ff8 && python benchmarks/bench_replace.py --baseline-src /tmp/before
  python benchmarks/bench_replace.py --files 2000 --replaces 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
OUTCOMES = ("ok", "zero", "both", "other", "missing", "error")


def count_pyarrow(table: pathlib.Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(table, format="parquet", partitioning="hive").count_rows()


def count_duckdb(table: pathlib.Path) -> int:
    import duckdb

    query = f"SELECT count(*) FROM read_parquet('{table}/**/*.parquet', hive_partitioning=true)"
    with duckdb.connect() as connection:
        return connection.execute(query).fetchone()[0]


def count_polars(table: pathlib.Path) -> int:
    import polars as pl

    return pl.scan_parquet(f"{table}/**/*.parquet", hive_partitioning=True).select(pl.len()).collect().item()


READERS = {"pyarrow": count_pyarrow, "duckdb": count_duckdb, "polars": count_polars}


def available_readers() -> list[str]:
    found = []
    for name in READERS:
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


def classify(count: int | None, error: BaseException | None, files: int) -> str:
    """One reader pass -> one of OUTCOMES."""
    if error is not None:
        text = str(error)
        if isinstance(error, FileNotFoundError) or "No such file" in text or "No files found" in text:
            return "missing"
        return "error"
    return {files: "ok", 0: "zero", 2 * files: "both"}.get(count, "other")


def read_loop(reader, table: pathlib.Path, files: int, stop: threading.Event, seen: list) -> None:
    """Counts rows until ``stop``; appends ``(start_s, outcome, detail)`` per pass."""
    while not stop.is_set():
        start = time.perf_counter()
        try:
            outcome = classify(reader(table), None, files)
            detail = ""
        except Exception as exc:  # noqa: BLE001 - what the reader raised is the finding
            outcome, detail = classify(None, exc, files), f"{type(exc).__name__}: {str(exc)[:120]}"
        seen.append((start, outcome, detail))


def longest_bad_ms(seen: list) -> float:
    """The longest stretch from the first to the last of consecutive bad passes, in ms."""
    longest, first, last = 0.0, None, None
    for start, outcome, _ in [*seen, (0.0, "ok", "")]:
        if outcome != "ok":
            first = start if first is None else first
            last = start
        elif first is not None:
            longest = max(longest, (last - first) * 1000)
            first = None
    return longest


def measure(src: pathlib.Path, model: str, inputs: pathlib.Path, root: pathlib.Path, reader: str, args) -> dict:
    """One reader's passes during ``args.replaces`` replaces of a committed run, with the code in ``src``."""
    shutil.rmtree(root, ignore_errors=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(src))
    command = [
        sys.executable,
        "-c",
        "from mnist_batch.cli import entry_point; entry_point()",
        "score",
        "--model",
        model,
        "--input",
        str(inputs),
    ]
    command += ["--output", str(root), "--layout", "runs", "--run-id", "nightly", "--run-date", "2026-06-01", "-q"]
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=src)
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=read_loop, args=(READERS[reader], root / "predictions", args.files, stop, seen))
    thread.start()
    took = []
    try:
        for _ in range(args.replaces):
            start = time.perf_counter()
            subprocess.run([*command, "--replace"], check=True, capture_output=True, env=env, cwd=src)
            took.append(time.perf_counter() - start)
    finally:
        stop.set()
        thread.join()
    counts = {outcome: sum(1 for _, o, _ in seen if o == outcome) for outcome in OUTCOMES}
    details = sorted({d for _, o, d in seen if d})[:3]
    pass_ms = (seen[-1][0] - seen[0][0]) / max(len(seen) - 1, 1) * 1000 if seen else 0.0
    return {"reader": reader, "passes": len(seen), "pass_ms": pass_ms, **counts,
            "longest_bad_ms": longest_bad_ms(seen), "replace_s": took, "details": details}  # fmt: skip


def make_inputs(target: pathlib.Path, count: int) -> None:
    """``count`` real test digits as PNG files under ``target/<label>/``."""
    from PIL import Image

    from mnist_batch.data import load_dataset

    test = load_dataset("sample").split("test")
    for i in range(count):
        path = target / str(int(test.labels[i % len(test)])) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i % len(test)]).save(path)


def render(results: list[dict]) -> str:
    head = (
        "| code | reader | passes | ms/pass | ok | 0 rows | both | other | missing file | error | longest bad stretch |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['code']} | {r['reader']} | {r['passes']:,} | {r['pass_ms']:.1f} | {r['ok']:,} | {r['zero']} | "
            f"{r['both']} | {r['other']} | {r['missing']} | {r['error']} | {r['longest_bad_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="files in the run (default 200)")
    parser.add_argument("--replaces", type=int, default=3, help="replaces per reader (default 3)")
    parser.add_argument("--readers", default=None, help="comma-separated subset of pyarrow,duckdb,polars")
    parser.add_argument("--model", default=None, help=".keras model (default: train the bench's small CNN)")
    parser.add_argument("--baseline-src", default=None, help="a checkout of older code, measured in the same run")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import bench_score

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_replace_"))
    model = args.model or str(bench_score.train_small_cnn(work / "model"))
    make_inputs(work / "in", args.files)
    readers = args.readers.split(",") if args.readers else available_readers()
    codes = [("this", REPO)] + ([("baseline", pathlib.Path(args.baseline_src).resolve())] if args.baseline_src else [])
    results = []
    for reader in readers:
        for code, src in codes:
            result = {"code": code, **measure(src, model, work / "in", work / f"root_{code}", reader, args)}
            print(json.dumps(result), flush=True)
            results.append(result)
    print(render(results))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
