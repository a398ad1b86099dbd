"""`mnist-batch monitor` over a long history: 1,000 committed runs of 100,000 rows each.

Builds a runs root (layout v2) holding only what the monitor reads: for each of N runs (default
1,000, one a day) ``_runs/dt=/run=/summary.json``, its ``_SUCCESS`` marker and its one-row
``runs/dt=/run=/`` shard of the runs table, with the counts of a 100,000-file night (``--rows``). Class mixes are drawn around the label mix of the bundled
sample's test split, confidence histograms around a trained CNN's; the model changes at the
middle run and the last run is a shifted batch (three classes only, more errors, low confidence),
so the page has a model change and a flagged run to show. No prediction rows are written: the
monitor never reads them.

Then it times, in a fresh process each (median of ``--repeat``):

  cli_s        ``mnist-batch monitor ROOT --output DIR`` end to end (interpreter start, imports,
               reading every summary and runs-table row, checks, runs.parquet, the page with its plots)
  and, in this process, the monitor's own stages: read_summaries_s, check_s, table_s, page_s.

Usage:
  python benchmarks/bench_monitor.py                   # 1,000 runs x 100,000 rows
  python benchmarks/bench_monitor.py --runs 100 --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
# Share of a trained CNN's top-class confidences per bin (20 bins over 0..1), most in the last bin.
CONFIDENCE_SHAPE = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 17, 24, 45, 9840], np.float64)


def summary(rng, dt: str, run_id: str, rows: int, model: tuple[str, str], class_mix, shifted: bool) -> dict:
    from mnist_batch.constants import MNIST_CLASS_NAMES

    errors = int(rng.binomial(rows, 0.03 if shifted else 0.002))
    scored = rows - errors
    if shifted:
        mix = np.zeros(10)
        mix[[1, 4, 7]] = 1 / 3
        conf = CONFIDENCE_SHAPE[::-1] + CONFIDENCE_SHAPE
    else:
        mix, conf = class_mix, CONFIDENCE_SHAPE
    predicted = rng.multinomial(scored, mix / mix.sum())
    hist = rng.multinomial(scored, conf / conf.sum())
    low = int(hist[:18].sum())
    mean_conf = float((hist * (np.arange(20) + 0.5) / 20).sum() / scored)
    stage = {"decode": errors - errors // 4, "read": errors // 4}
    wall = float(rng.uniform(280, 340))
    return {
        "counts": {
            "matched": rows,
            "scored": scored,
            "errors": errors,
            "skipped": 250,
            "low_confidence": low,
            "blank": int(rng.binomial(scored, 0.001)),
            "labelled": 0,
        },
        "errors_by_stage": stage,
        "skipped_by_reason": {"already scored": 200, "not an image": 50},
        "accuracy": None,
        "macro_f1": None,
        "confusion_matrix": [[0] * 10 for _ in range(10)],
        "predicted_class_counts": predicted.tolist(),
        "confidence_histogram": hist.tolist(),
        "mean_confidence": mean_conf,
        "model": f"/srv/models/{model[0]}.keras",
        "model_id": model[1],
        "model_name": model[0],
        "class_names": list(MNIST_CLASS_NAMES),
        "run_id": run_id,
        "dt": dt,
        "runner": "DataflowRunner",
        "review_threshold": 0.9,
        "wall_time_s": wall,
        "images_per_s": round(rows / wall, 1),
        "started_at": f"{dt}T02:15:00+00:00",
        "committed_at": f"{dt}T02:20:00+00:00",
        "layout": "runs",
        "exit_code": 0,
        "failure": None,
    }


def make_root(root: pathlib.Path, runs: int, rows: int, seed: int = 0) -> None:
    """A runs root with ``runs`` committed runs' summaries, markers and runs-table rows (nothing else)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.data import load_dataset
    from mnist_batch.tables import (
        LAYOUT_FILE,
        LAYOUT_FORMAT,
        LAYOUT_VERSION,
        RUNS_DIR,
        RUNS_SCHEMA,
        RUNS_TABLE,
        SUCCESS_FILE,
        SUMMARY_FILE,
        runs_row,
    )

    rng = np.random.default_rng(seed)
    labels = load_dataset("sample").split("test").labels
    class_mix = np.bincount(labels, minlength=10).astype(np.float64)
    root.mkdir(parents=True)
    info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
    (root / LAYOUT_FILE).write_text(json.dumps(info))
    start = datetime.date(2024, 1, 1)
    models = [("cnn", "a" * 64), ("cnn", "b" * 64)]
    for i in range(runs):
        dt = (start + datetime.timedelta(days=i)).isoformat()
        run_id = f"d{dt.replace('-', '')}-try1"
        model = models[0] if i < runs // 2 else models[1]
        data = summary(rng, dt, run_id, rows, model, class_mix, shifted=(i == runs - 1))
        meta = root / RUNS_DIR / f"dt={dt}" / f"run={run_id}"
        meta.mkdir(parents=True)
        text = json.dumps(data, indent=2)
        (meta / SUMMARY_FILE).write_text(text)
        (meta / SUCCESS_FILE).write_text(text)
        row_dir = root / RUNS_TABLE / f"dt={dt}" / f"run={run_id}"
        row_dir.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([runs_row(data)], schema=RUNS_SCHEMA), row_dir / "part-0.parquet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100_000, help="files matched per run (in the summaries)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from mnist_batch.monitoring.monitor import monitor

    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        root, out = pathlib.Path(tmp) / "root", pathlib.Path(tmp) / "monitor"
        t = time.perf_counter()
        make_root(root, args.runs, args.rows)
        print(f"built {args.runs:,} committed runs x {args.rows:,} rows in {time.perf_counter() - t:.1f} s")
        cli = [sys.executable, "-m", "mnist_batch", "monitor", str(root), "--output", str(out)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            proc = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=REPO)
            times.append(time.perf_counter() - t)
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr)
                return 1
        print(proc.stdout.strip())
        stages = [monitor(str(root), out).timings for _ in range(args.repeat)]
        result = monitor(str(root), out)
        page_kb = result.outputs["page"].stat().st_size / 1024
        figures = {
            "runs": args.runs,
            "rows_per_run": args.rows,
            "cli_s": round(statistics.median(times), 2),
            **{k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]},
            "page_kb": round(page_kb),
            "flagged_latest": [c.check for c in result.results[-1] if c.status == "alert"],
            "runs_table_notes": len(result.table_notes),
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
