"""Incremental runs over a long history: launch time, job-graph size and peak RSS vs history keys.

Builds a runs root (layout v2) whose committed history holds N file keys (default 10,000,
100,000 and 1,000,000, in 10 runs of realistic ``gs://`` paths), plus a folder of 1,000 new PNG
files (real digits of the bundled test split) of which 500 are already in the history with their
real (path, size, mtime) keys. Then, for each N, in its own subprocess, one incremental
``score --layout runs`` run (DirectRunner) is measured:

  launch_s      start of the launch -> the pipeline handed to the runner (checks, lease,
                listing the committed runs, building the graph)
  graph_bytes   size of the serialized job graph (``Pipeline.to_runner_api()``), what a runner
                such as Dataflow receives (it refuses graphs over 10 MB)
  wall_s        the whole run, including reading the history inside the job
  peak_rss_mb   the subprocess's peak resident memory (``ru_maxrss``)

and the run must score exactly the 500 new files and skip the 500 known ones.
Targets (issue #10): graph <= 1 MB and launch <= 10 s at 1,000,000 keys.

Usage:
  python benchmarks/bench_history.py                    # 10k, 100k, 1M keys
  python benchmarks/bench_history.py --keys 10000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = 10
NEW_FILES = 1000


def make_history(root: pathlib.Path, keys: int, known: list[tuple[str, int, float]]) -> None:
    """A runs root whose committed runs took on ``keys`` files (``known`` among them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.tables import LAYOUT_FILE, LAYOUT_FORMAT, LAYOUT_VERSION, RUN_TABLES

    root.mkdir(parents=True)
    info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
    (root / LAYOUT_FILE).write_text(json.dumps(info))
    per_run = keys // RUNS
    for r in range(RUNS):
        dt, run_id = f"2026-10-{r + 1:02d}", f"d202610{r + 1:02d}"
        start = r * per_run
        n = per_run if r < RUNS - 1 else keys - start
        paths = [
            f"gs://scans-bucket/incoming/2026/10/{r + 1:02d}/batch-{i // 1000:04d}/scan-{start + i:09d}.png"
            for i in range(n - (len(known) if r == 0 else 0))
        ]
        sizes = [1200 + (start + i) % 500 for i in range(len(paths))]
        mtimes = [1_790_000_000.0 + start + i + 0.25 for i in range(len(paths))]
        if r == 0:
            paths += [k[0] for k in known]
            sizes += [k[1] for k in known]
            mtimes += [k[2] for k in known]
        manifest = pa.table(
            {"path": paths, "size": sizes, "mtime": mtimes, "sha256": [None] * len(paths), "run_id": [run_id] * len(paths)},
            schema=RUN_TABLES["manifest"],
        )
        for table, data in (("manifest", manifest), ("errors", RUN_TABLES["errors"].empty_table())):
            folder = root / table / f"dt={dt}" / f"run={run_id}"
            folder.mkdir(parents=True)
            pq.write_table(data, folder / "part-0.parquet")
        meta = root / "_runs" / f"dt={dt}" / f"run={run_id}"
        meta.mkdir(parents=True)
        (meta / "summary.json").write_text("{}")
        (meta / "_SUCCESS").write_text("{}")


def worker(root: str, inputs: str, model: str) -> None:
    """One incremental run, instrumented; prints a JSON line."""
    import apache_beam as beam

    from mnist_batch.config import ScoreConfig
    from mnist_batch.scoring.launch import RunOptions, launch

    marks: dict[str, float] = {}
    start = time.perf_counter()
    original_run = beam.Pipeline.run

    def timed_run(self, *args, **kwargs):
        marks["launch_s"] = time.perf_counter() - start
        marks["graph_bytes"] = len(self.to_runner_api().SerializeToString())
        return original_run(self, *args, **kwargs)

    beam.Pipeline.run = timed_run
    summary = launch(
        ScoreConfig(model=model, inputs=(inputs,), output=root, run_id="bench"),
        RunOptions(layout="runs", incremental=True, run_date="2026-11-01"),
    )
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                **marks,
                "wall_s": wall,
                "peak_rss_mb": rss,
                "scored": summary["counts"]["scored"],
                "skipped": summary["incremental"]["skipped"],
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="10000,100000,1000000", help="comma-separated history sizes")
    parser.add_argument("--model", default=None, help=".keras model (default: train the bench's small CNN)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("ROOT", "INPUTS", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    from PIL import Image

    sys.path.insert(0, str(HERE))
    import bench_score

    from mnist_batch.data import load_dataset

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_history_"))
    model = args.model or str(bench_score.train_model(work / "model"))
    test = load_dataset("sample").split("test")
    inputs = work / "new"
    for i in range(NEW_FILES):
        path = inputs / str(test.labels[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
    files = sorted(inputs.rglob("*.png"))
    known = [(str(p), p.stat().st_size, p.stat().st_mtime) for p in files[: NEW_FILES // 2]]
    results = []
    for keys in [int(k) for k in args.keys.split(",")]:
        root = work / f"root_{keys}"
        t0 = time.perf_counter()
        make_history(root, keys, known)
        made = time.perf_counter() - t0
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(root), str(inputs), model],
            capture_output=True, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        result = {"keys": keys, **json.loads(proc.stdout.strip().splitlines()[-1])}
        assert result["scored"] == NEW_FILES - len(known) and result["skipped"] == len(known), result
        results.append(result)
        print(
            f"{keys:>9,} keys (history made in {made:.1f} s): launch {result['launch_s']:.2f} s, "
            f"graph {result['graph_bytes'] / 1024:,.1f} KiB, run {result['wall_s']:.1f} s, "
            f"peak RSS {result['peak_rss_mb']:,.0f} MiB, scored {result['scored']}, skipped {result['skipped']}",
            flush=True,
        )
    print()
    print("| history keys | launch s | job graph KiB | whole run s | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['keys']:,} | {r['launch_s']:.2f} | {r['graph_bytes'] / 1024:,.1f} | {r['wall_s']:.1f} "
            f"| {r['peak_rss_mb']:,.0f} |"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
