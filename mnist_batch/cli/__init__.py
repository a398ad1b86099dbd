"""The ``mnist-batch`` command line.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``; heavy frameworks (TensorFlow, Beam) are imported inside ``run`` so
``mnist-batch data info`` starts in well under a second.

Exit codes: 0 success; 2 bad input or argument, or a store that failed (one ``mnist-batch:
error: ...`` line, no traceback unless ``--debug``); other non-zero codes are
documented by each subcommand.

Quiet by default (:mod:`mnist_batch.cli.logs`): the libraries log at warning level and above
and their known start-up noise is dropped; ``--verbose`` shows everything, ``--quiet`` only
errors and results.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
import traceback
from collections.abc import Sequence

from mnist_batch import __version__
from mnist_batch.cli import (
    data_cmd,
    evaluate_cmd,
    export_cmd,
    monitor_cmd,
    predict_cmd,
    report_cmd,
    runs_cmd,
    score_cmd,
    train_cmd,
)
from mnist_batch.cli.common import Parser, add_verbosity
from mnist_batch.cli.logs import StderrFilter, configure_logging
from mnist_batch.errors import MnistBatchError

EXIT_OK = 0
EXIT_USAGE = 2

__all__ = ["EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

COMMANDS = (data_cmd, train_cmd, export_cmd, score_cmd, runs_cmd, monitor_cmd, evaluate_cmd, report_cmd, predict_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mnist-batch",
        description="Train a digit model, then score folders of scanned digits in batch with Apache Beam.",
        epilog="Run `mnist-batch COMMAND --help` for each command's options, an example and its exit codes.\n"
        "Exit codes: 0 ok; 2 bad argument or input; 130 interrupted; others per command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mnist-batch {__version__}")
    add_verbosity(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, filter_stderr: bool = False) -> int:
    """Runs the command line; returns the process exit code.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).
      filter_stderr: route file descriptor 2 through :class:`~mnist_batch.cli.logs.StderrFilter`
        (the console script does; in-process callers such as tests keep their own stderr).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_unknown_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.beam_args = extra
    configure_logging(args.verbosity)
    if filter_stderr:
        with StderrFilter(args.verbosity):
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args) or 0)
    except MnistBatchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mnist-batch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name not in ("tensorflow", "keras"):
            raise
        if args.debug:
            traceback.print_exc()
        print(
            f"mnist-batch: error: {args.command} needs TensorFlow, which this scoring-only install lacks: "
            "pip install 'mnist-batch[train]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:
        from mnist_batch.runstore.errors import describe, is_storage_error

        if isinstance(exc, BrokenPipeError) or not is_storage_error(exc) or args.debug:
            raise  # a bug (its traceback), or stdout closed by its reader (entry_point ends quietly)
        print(f"mnist-batch: error: the storage failed: {describe(exc)} (--debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mnist-batch: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    """Console-script entry: ``mnist-batch``.

    Output piped into a program that stops reading (``mnist-batch data info sample --json |
    head``) ends the command quietly, as it does for other Unix tools.
    """
    try:
        code = main(filter_stderr=True)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that raises nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a killed pipe writer
    exit_now(code)


def exit_now(code: int) -> None:
    """Ends the process with ``code`` once the command is done, without the interpreter tearing down
    each module it loaded (~50 ms with numpy, pyarrow, Pillow and LiteRT: a sixth of a small run).

    The exit handlers still run (logging's flush, Beam's job servers, temporary folders' clean-up)
    and stdout and stderr are flushed; every file the commands write is closed before they return.
    While a thread that is not a daemon still runs, the usual exit (which waits for it) instead.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter's own exit runs first (CPython's; no public name)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
