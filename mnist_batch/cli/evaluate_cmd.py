"""``mnist-batch evaluate``: offline evaluation of models on a data set (not implemented yet)."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, not_implemented


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate and compare models on a data set (not implemented yet)",
        description="Evaluate one or more models on a data set split.\n\nExample:\n"
        "  mnist-batch evaluate --model models/cnn.keras --dataset sample --split test --output out/eval",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=not_implemented("evaluate", "issue #5"))
