"""``mnist-batch evaluate``: offline evaluation of one or more models on a data set split."""

from __future__ import annotations

import argparse
import pathlib

from mnist_batch.cli.common import HelpFormatter, add_verbosity, slow_step
from mnist_batch.constants import AUTO_RUNTIME, RUNTIME_CHOICES, SPLITS
from mnist_batch.errors import MnistBatchError
from mnist_batch.models.runtimes import RUNTIME_HELP
from mnist_batch.review import check_review_threshold
from mnist_batch.trust import check_threshold, describe

EPILOG = """Outputs under --output DIR:
  metrics.parquet      one row per model: accuracy, macro_f1, top2_accuracy, log_loss, ece (15 bins),
                       error_rate_at_coverage (most confident 98 %), images_per_s, McNemar vs the first model
  per_class.parquet    model, label, class_name, support, precision, recall, f1
  confusion.parquet    model, true_label, predicted_label, true_class, predicted_class, count
  predictions.parquet  one row per model and image (probabilities; pixels or path for the report)
  comparison.md        the comparison table and a significance sentence per model
  trust.{parquet,md,png}  with --trust: per generated set (clean, each corruption, each kind of
                       non-digit, Fashion-MNIST when installed): accuracy, flagged, wrong and unflagged
  report.html + PNGs   confusion heatmap, per-class bars, misclassified / least confident images,
                       confidence histogram, reliability diagram (as `mnist-batch report DIR`)

Arrays (sample, npz:, idx:, fashion-mnist) run in-process through tf.data; folder:DIR (or a plain
directory of DIR/<class>/*.png) runs through the scoring pipeline, with scoring's preprocessing.

Exit codes: 0 evaluated; 2 bad argument, model, data set or output folder.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate and compare models on a data set",
        description="Evaluate one or more models on a data set split.\n\nExamples:\n"
        "  mnist-batch evaluate --model out/demo/models/cnn.keras --dataset sample --split test --output out/eval\n"
        "  mnist-batch evaluate --model out/demo/models/cnn.keras --model models/mlp-512.keras --dataset sample "
        "--output out/compare",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--model", action="append", required=True, metavar="PATH.keras", help="repeat to compare; first = reference"
    )
    p.add_argument(
        "--dataset",
        default="sample",
        help="sample | npz:PATH | idx:DIR | fashion-mnist[:DIR] | mnist | folder:DIR | DIR",
    )
    p.add_argument(
        "--class-names", default=None, help="name the data set's classes: comma-separated, or a file (one a line)"
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="which split to evaluate on")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --output")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default=AUTO_RUNTIME, help=RUNTIME_HELP)
    p.add_argument(
        "--not-digit-threshold",
        type=float,
        default=None,
        metavar="T",
        help="not a digit from this not-digit score on (0 < T <= 1); default: each model card's",
    )
    p.add_argument(
        "--review-threshold",
        type=float,
        default=None,
        metavar="T",
        help="low confidence below this confidence (0 <= T <= 1); default: each model card's (0.9 without one)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="also measure on generated damaged digits and non-digits: trust.parquet, trust.md, trust.png",
    )
    p.add_argument("--no-report", dest="report", action="store_false", help="skip report.html and the plots")
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.not_digit_threshold is not None:
        check_threshold(args.not_digit_threshold, "--not-digit-threshold", MnistBatchError)
    check_review_threshold(args.review_threshold, "--review-threshold", MnistBatchError)
    with slow_step(args, "loading TensorFlow ..."):
        from mnist_batch.evaluation import evaluate

    summary = evaluate(
        args.model,
        args.dataset,
        args.split,
        args.output,
        overwrite=args.overwrite,
        class_names=args.class_names,
        runtime=args.runtime,
        not_digit_threshold=args.not_digit_threshold,
        trust_report=args.trust,
        review_threshold=args.review_threshold,
    )
    out = pathlib.Path(args.output)
    left = summary.get("left_out")
    if left and left["evaluated"] < left["files"]:  # a folder: say which files the figures leave out
        print(
            f"evaluate: {summary['dataset']}: {left['files']:,} files, {left['evaluated']:,} evaluated; left out: "
            f"{left['errors']:,} unreadable or not decodable, {left['skipped']:,} skipped (not an image extension, "
            f"links, tool outputs), {left['unlabelled']:,} in a folder that names no class"
        )
    for m in summary["models"]:
        print(
            f"runtime: {m['model']} scored with {m.get('runtime', 'keras')} (file sha256 "
            f"{str(m.get('runtime_model_id', ''))[:12]}, model_id {m['model_id'][:12]})"
        )
        print(not_digit_line(m))
    print(f"{out / 'comparison.md'}:")
    print((out / "comparison.md").read_text(encoding="utf-8"))
    if args.trust:
        print(f"{out / 'trust.md'} (plot: {out / 'trust.png'}):")
        print((out / "trust.md").read_text(encoding="utf-8"))
    if args.report:
        from mnist_batch.report import build_report

        print(f"report: {build_report(out)}")
    print(f"tables: {out}/{{metrics,per_class,confusion,predictions}}.parquet")
    return 0


def not_digit_line(m: dict) -> str:
    """One line per model: its not-digit check on this split, or that it has none."""
    threshold = m.get("not_digit_threshold")
    if threshold is None:
        return f"{m['model']}: {describe(None, 'none')}"
    return (
        f"{m['model']}: not a digit (score >= {threshold:g}) {m['not_digit_rate']:.2%}, flagged in all "
        f"(that or confidence below {m.get('review_threshold', 0.9):g}) "
        f"{m['flagged_rate']:.2%}, wrong and unflagged {m['wrong_unflagged_rate']:.2%}"
    )
