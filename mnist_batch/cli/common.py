"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import contextlib
import difflib
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


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (subcommands' parsers are of the same class) whose "required" error
    names the typo that left an option missing: ``--ouput`` -> "did you mean --output?"."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        hint = typo_hint(message, getattr(self, "_given", []), list(self._option_string_actions))
        super().error(hint or message)


def typo_hint(message: str, given: list[str], known: list[str]) -> str | None:
    """For argparse's "the following arguments are required: --output" after ``--ouput x``:
    "unrecognized argument --ouput (did you mean --output?)"; None when no given option is close."""
    if not message.startswith("the following arguments are required"):
        return None
    missing = [w.rstrip(",") for w in message.split(":", 1)[1].split() if w.startswith("--")]
    for word in given:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            guess = difflib.get_close_matches(flag, missing, n=1, cutoff=0.7)
            if guess:
                return f"unrecognized argument {flag} (did you mean {guess[0]}?)"
    return None


def add_verbosity(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Adds ``-v/--verbose``, ``-q/--quiet`` and ``--debug`` (accepted before or after the command name).

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
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="show full tracebacks on errors",
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
