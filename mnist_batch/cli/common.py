"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Iterator

from mnist_batch.cli.logs import QUIET, VERBOSE

EXIT_CODES = "Exit codes: 0 ok; 2 bad argument or input (one `mnist-batch: error: ...` line)."
"""The exit codes of a command that has no others."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in descriptions as written and shows defaults where they say something.

    No default is shown for on/off flags (where "--no-augment (default: True)" would read
    backwards), required options, options whose default is None (their help says what
    happens without them) and help that already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or action.required or action.default in (None, argparse.SUPPRESS):
            return text
        if "default" in text:
            return text
        return super()._get_help_string(action)


def add_verbosity(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Adds ``-v/--verbose`` and ``-q/--quiet`` (accepted before or after the command name).

    Args:
      parser: the top-level parser or a subcommand's parser.
      top_level: the top-level parser holds the default; subcommands leave it alone.
    """
    group = parser.add_mutually_exclusive_group()
    default = 0 if top_level else argparse.SUPPRESS
    group.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=VERBOSE,
        default=default,
        help="also show the libraries' INFO logs and TensorFlow's start-up lines",
    )
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=QUIET,
        default=default,
        help="errors and results only: no warnings, no progress lines",
    )


def progress(args: argparse.Namespace, message: str) -> None:
    """Prints ``mnist-batch COMMAND: progress: MESSAGE`` on stderr (not with ``--quiet``)."""
    if getattr(args, "verbosity", 0) <= QUIET:
        return
    print(f"mnist-batch {getattr(args, 'command', '')}: progress: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def slow_step(args: argparse.Namespace, message: str, after_s: float = 2.0) -> Iterator[dict]:
    """Announces a step with :func:`progress` only when it is still running after ``after_s``.

    A cold start (importing TensorFlow and Beam: 10-30 s on a small CPU machine) gets a line;
    a warm process (the modules already imported) stays silent. The yielded dict tells the
    caller afterwards whether the line was printed (``"shown"``) and how long the step took
    (``"seconds"``).
    """
    state = {"shown": False, "seconds": 0.0}

    def announce() -> None:
        state["shown"] = True
        progress(args, message)

    timer = threading.Timer(after_s, announce)
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()
        state["seconds"] = time.perf_counter() - start
