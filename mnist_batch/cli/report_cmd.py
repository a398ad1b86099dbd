"""``mnist-batch report``: an HTML report with plots from a scoring, evaluation or training output."""

from __future__ import annotations

import argparse
import pathlib

from mnist_batch.cli.common import HelpFormatter, add_verbosity

EPILOG = """Writes into the folder (or --dest):
  report.html            self-contained (PNGs embedded): summary, per-class table, every plot
  confusion.png          heatmap with counts          per_class.png        precision / recall / F1 bars
  misclassified.png      wrong predictions, true -> predicted (confidence), original image when readable
  least_confident.png    lowest-confidence predictions
  confidence.png         confidence histogram (right / wrong)    reliability.png   reliability diagram + ECE
  learning_curve.png     (training run dir: loss and accuracy per epoch, from history.csv)
Evaluation folders with several models get one set of PNGs per model, prefixed MODEL_,
and the page shows the models side by side.

A scoring output on a bucket (s3://, gs://: a flat output, or one run of a runs root,
ROOT/_runs/dt=D/run=ID) is read from there: its summary and tables are fetched into --dest,
which it then needs (a local folder).

Exit codes: 0 written; 2 not an output folder, or files from different runs.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="HTML report and plots from a scoring / evaluation output or a training run dir",
        description="Build a report from a scoring or evaluation output folder, or a training run dir.\n\n"
        "Examples:\n"
        "  mnist-batch report out/scored\n"
        "  mnist-batch report out/eval\n"
        "  mnist-batch report runs/cnn            (training run dir: learning curves)\n"
        "  mnist-batch report s3://bucket/runs/_runs/dt=2026-12-01/run=n1 --dest out/report-n1",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("folder", help="scoring output (summary.json), evaluation output, or training run dir")
    p.add_argument("--dest", default=None, help="write the report here instead of into FOLDER")
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.files import is_remote
    from mnist_batch.report import build_report, build_run_report

    if is_remote(args.folder):
        return report_remote(args.folder, args.dest)
    folder = pathlib.Path(args.folder)
    is_run_dir = (folder / "history.csv").is_file() and not (
        (folder / "summary.json").is_file() or (folder / "evaluation.json").is_file()
    )
    page = build_run_report(folder, args.dest) if is_run_dir else build_report(folder, args.dest)
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    print(f"report: {page}")
    print(f"plots:  {', '.join(pngs)}")
    return 0


def report_remote(uri: str, dest: str | None) -> int:
    """A scoring output on a bucket: its summary and tables fetched into ``dest``, the report built there."""
    import json

    import pyarrow.parquet as pq

    from mnist_batch.errors import MnistBatchError
    from mnist_batch.report import build_report
    from mnist_batch.runstore import fs
    from mnist_batch.runstore.shards import read_shards
    from mnist_batch.tables import RUNS_DIR, SUMMARY_FILE, TABLES

    if not dest:
        raise MnistBatchError(
            f"report: {uri} is on a remote filesystem: pass --dest LOCAL_DIR (the report is written there)"
        )
    fs.configure()  # Beam's filesystems and the S3 client from the environment (AWS_* variables)
    fs.check_reachable(uri, f"report: {uri}")
    summary_uri = fs.join(uri, SUMMARY_FILE)
    if not fs.exists(summary_uri):
        raise MnistBatchError(f"report: {uri}: not a scoring output (no {SUMMARY_FILE})")
    summary = json.loads(fs.read_text(summary_uri))
    run_dir, dt_dir, runs_dir = fs.basename(uri), fs.basename(fs.parent(uri)), fs.parent(fs.parent(uri))
    in_store = summary.get("layout") == "runs" and fs.basename(runs_dir) == RUNS_DIR
    local = pathlib.Path(dest)
    for table in TABLES:
        source = fs.join(fs.parent(runs_dir), table, dt_dir, run_dir) if in_store else fs.join(uri, table)
        (local / table).mkdir(parents=True, exist_ok=True)
        for i, piece in enumerate(read_shards(source)):
            pq.write_table(piece, local / table / f"part-{i:05d}.parquet")
    (local / SUMMARY_FILE).write_text(json.dumps({**summary, "layout": "flat"}), encoding="utf-8")
    page = build_report(local, local)
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    print(f"report: {page} (tables of {uri})")
    print(f"plots:  {', '.join(pngs)}")
    return 0
