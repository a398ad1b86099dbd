"""``mnist-batch score``: the Beam batch-scoring pipeline (not implemented yet)."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, not_implemented


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score folders of images with Beam, write Parquet (not implemented yet)",
        description="Score folders of digit images with Apache Beam and write Parquet outputs.\n\nExample:\n"
        "  mnist-batch score --model models/cnn.keras --input out/test_images --output out/scored",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=not_implemented("score", "issue #4"))
