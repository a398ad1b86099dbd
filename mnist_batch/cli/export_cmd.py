"""``mnist-batch export``: make a fast runtime's file for an exported model and record it in its card."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, add_verbosity, slow_step
from mnist_batch.constants import FAST_RUNTIME

EPILOG = """Writes PATH.tflite beside PATH.keras (LiteRT, int8 weights: dynamic-range quantisation) and
adds to PATH.card.json its sha256, size and its agreement with the Keras model on the held-out
split (share of images with the same predicted class, largest probability difference, both
accuracies). `score`, `evaluate` and `predict` then use it by default (--runtime auto) when that
agreement is at least 99.9 %. `train --export` already does this; use this command for models
exported before, or to measure on another data set (--dataset).

Exit codes: 0 written; 2 bad model, card, data set or missing runtime package.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="make the fast runtime's file (LiteRT) for an exported model, measured and recorded in its card",
        description="Convert an exported .keras model for a faster CPU runtime, measure its agreement with "
        "Keras on the held-out split and record both in the model card.\n\nExamples:\n"
        "  mnist-batch export out/demo/models/cnn.keras\n"
        "  mnist-batch export models/fashion.keras --dataset fashion-mnist",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="PATH.keras", help="exported model (its .card.json beside it)")
    p.add_argument("--runtime", choices=(FAST_RUNTIME,), default=FAST_RUNTIME, help="runtime to make the file for")
    p.add_argument("--dataset", default=None, help="data set to measure on (default: the one the card names)")
    p.add_argument("--split", default="test", choices=("test", "validation"), help="split to measure on")
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.models.errors import require_tensorflow

    require_tensorflow("export")
    with slow_step(args, "loading TensorFlow ..."):
        from mnist_batch.models.artifacts import describe_artifact
        from mnist_batch.training.export import add_runtime

    card = add_runtime(args.model, args.runtime, dataset=args.dataset, split=args.split)
    print(describe_artifact(args.runtime, card.runtimes[args.runtime], args.model))
    print(f"model card:     {args.model.removesuffix('.keras')}.card.json")
    return 0
