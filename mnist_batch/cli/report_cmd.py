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
        "  mnist-batch report runs/cnn            (training run dir: learning curves)",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("folder", help="scoring output (summary.json), evaluation output, or training run dir")
    p.add_argument("--dest", default=None, help="write the report here instead of into FOLDER")
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.report import build_report, build_run_report

    folder = pathlib.Path(args.folder)
    is_run_dir = (folder / "history.csv").is_file() and not (
        (folder / "summary.json").is_file() or (folder / "evaluation.json").is_file()
    )
    page = build_run_report(folder, args.dest) if is_run_dir else build_report(folder, args.dest)
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    print(f"report: {page}")
    print(f"plots:  {', '.join(pngs)}")
    return 0
