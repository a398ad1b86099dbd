"""Incremental runs over a long history: launch time, job-graph size and peak RSS vs history keys.

Builds a runs root (layout v2) whose committed history holds N file keys (default 10,000,
100,000 and 1,000,000, in 10 runs of realistic ``gs://`` paths), plus a folder of 1,000 new PNG
files (real digits of the bundled test split) of which 500 are already in the history with their
real (path, size, mtime) keys. Then, for each N, in its own subprocess, one incremental
``score --layout runs`` run (DirectRunner) is measured:

  launch_s      start of the launch -> the job graph built and serialised, ready for the runner
                (checks, lease, listing the committed runs, building and serialising the graph)
  graph_bytes   size of the serialized job graph (``Pipeline.to_runner_api()``), what a runner
                such as Dataflow receives (it refuses graphs over 10 MB)
  wall_s        the whole run, including reading the history inside the job
  peak_rss_mb   the subprocess's peak resident memory (``ru_maxrss``)

and the run must score exactly the 500 new files and skip the 500 known ones.
Targets (issue #10): graph <= 1 MB and launch <= 10 s at 1,000,000 keys.

With ``--baseline-src`` the code before layout v2 (known keys read by the launcher and pickled
into the filter DoFn) runs the same history in its own layout, in the same run.

Usage:
  python benchmarks/bench_history.py                    # 10k, 100k, 1M keys
  git worktree add /tmp/v1 a11d286 && python benchmarks/bench_history.py --baseline-src /tmp/v1
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
            {
                "path": paths,
                "size": sizes,
                "mtime": mtimes,
                "sha256": [None] * len(paths),
                "run_id": [run_id] * len(paths),
            },
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


def make_v1_history(root: pathlib.Path, keys: int, known: list[tuple[str, int, float]]) -> None:
    """The same history in the layout before v2 (``ROOT/dt=/run=/{manifest,errors}/``), for the baseline."""
    v2 = root.parent / (root.name + "_v2tmp")
    make_history(v2, keys, known)
    for run_meta in (v2 / "_runs").glob("dt=*/run=*"):
        dt, run = run_meta.parent.name, run_meta.name
        target = root / dt / run
        for table in ("manifest", "errors"):
            (target / table).mkdir(parents=True)
            (v2 / table / dt / run / "part-0.parquet").rename(target / table / "part-0.parquet")
        (target / "_SUCCESS").write_text("{}")


def launch_v1(model: str, inputs: str, root: str) -> dict:
    """The launcher before v2 (a checkout of that code on PYTHONPATH): known keys pickled into the DoFn."""
    from mnist_batch.config import ScoreConfig
    from mnist_batch.runstore import runs

    config = ScoreConfig(model=model, inputs=(inputs,), output=root, run_id="bench")
    summary = runs.run_partitioned(config, runs.RunOptions(incremental=True, run_date="2026-11-01"))
    return {"scored": summary["counts"]["scored"], "skipped": summary["incremental"]["skipped"]}


def worker(root: str, inputs: str, model: str) -> None:
    """One incremental run, instrumented; prints a JSON line."""
    import apache_beam as beam

    marks: dict[str, float] = {}
    start = time.perf_counter()
    original_run = beam.Pipeline.run

    def timed_run(self, *args, **kwargs):
        marks["graph_bytes"] = len(self.to_runner_api().SerializeToString())
        marks["launch_s"] = time.perf_counter() - start  # checks, history, graph built and serialised
        marks["launch_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return original_run(self, *args, **kwargs)

    beam.Pipeline.run = timed_run
    try:
        from mnist_batch.scoring.launch import RunOptions, launch
    except ImportError:  # the baseline checkout
        counts = launch_v1(model, inputs, root)
    else:
        from mnist_batch.config import ScoreConfig

        summary = launch(
            ScoreConfig(model=model, inputs=(inputs,), output=root, run_id="bench"),
            RunOptions(layout="runs", incremental=True, run_date="2026-11-01"),
        )
        counts = {"scored": summary["counts"]["scored"], "skipped": summary["incremental"]["skipped"]}
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**marks, "wall_s": wall, "peak_rss_mb": rss, **counts}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="10000,100000,1000000", help="comma-separated history sizes")
    parser.add_argument("--model", default=None, help=".keras model (default: train the bench's small CNN)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="a checkout of the code before layout v2 (e.g. git worktree add /tmp/v1 a11d286): measured too",
    )
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
    model = args.model or str(bench_score.train_small_cnn(work / "model"))
    test = load_dataset("sample").split("test")
    inputs = work / "new"
    for i in range(NEW_FILES):
        path = inputs / str(test.labels[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
    files = sorted(inputs.rglob("*.png"))
    known = [(str(p), p.stat().st_size, p.stat().st_mtime) for p in files[: NEW_FILES // 2]]
    results = []
    versions = [("v2", None)] + ([("v1", args.baseline_src)] if args.baseline_src else [])
    for keys in [int(k) for k in args.keys.split(",")]:
        for version, src in versions:
            root = work / f"root_{version}_{keys}"
            t0 = time.perf_counter()
            (make_history if version == "v2" else make_v1_history)(root, keys, known)
            made = time.perf_counter() - t0
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            if src:
                env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(root), str(inputs), model],
                capture_output=True, text=True, env=env, cwd=src or REPO,
            )  # fmt: skip
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            result = {"keys": keys, "version": version, **json.loads(proc.stdout.strip().splitlines()[-1])}
            assert result["scored"] == NEW_FILES - len(known) and result["skipped"] == len(known), result
            results.append(result)
            print(
                f"{version} {keys:>9,} keys (history made in {made:.1f} s): launch {result['launch_s']:.2f} s, "
                f"graph {result['graph_bytes'] / 1024:,.1f} KiB, launcher RSS {result['launch_rss_mb']:,.0f} MiB, "
                f"run {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MiB, "
                f"scored {result['scored']}, skipped {result['skipped']}",
                flush=True,
            )
    print()
    print("| layout | history keys | launch s | job graph KiB | RSS at launch MiB | whole run s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['version']} | {r['keys']:,} | {r['launch_s']:.2f} | {r['graph_bytes'] / 1024:,.1f} "
            f"| {r['launch_rss_mb']:,.0f} | {r['wall_s']:.1f} | {r['peak_rss_mb']:,.0f} |"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
