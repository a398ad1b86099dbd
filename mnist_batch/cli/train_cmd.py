"""``mnist-batch train``: train a model zoo network and export it (not implemented yet)."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, not_implemented


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and export it with a model card (not implemented yet)",
        description="Train a model on a data set and export it.\n\nExample:\n"
        "  mnist-batch train --dataset sample --model cnn --export models/cnn.keras",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=not_implemented("train", "issue #3"))
