"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import sys

EXIT_NOT_IMPLEMENTED = 3


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in descriptions as written and shows defaults."""


def not_implemented(command: str, issue: str):
    """Returns a ``run`` function for a subcommand that does not exist yet: it says so, exit 3."""

    def run(args: argparse.Namespace) -> int:
        print(
            f"mnist-batch {command}: not implemented yet ({issue}); nothing was done.",
            file=sys.stderr,
        )
        return EXIT_NOT_IMPLEMENTED

    return run
