"""``mnist-batch predict``: classify single images (not implemented yet)."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, not_implemented


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify one or more image files (not implemented yet)",
        description="Classify image files and print class, confidence and top-3.\n\nExample:\n"
        "  mnist-batch predict my_digit.jpg --model models/cnn.keras",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=not_implemented("predict", "issue #5"))
