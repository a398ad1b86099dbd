"""``mnist-batch report``: plots and HTML from scoring or evaluation outputs (not implemented yet)."""

from __future__ import annotations

import argparse

from mnist_batch.cli.common import HelpFormatter, not_implemented


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html and PNG plots from an output folder (not implemented yet)",
        description="Build a report from a scoring or evaluation output folder.\n\nExample:\n"
        "  mnist-batch report out/scored",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=not_implemented("report", "issue #5"))
