"""Quiet by default: library logs at warning level and above, start-up noise dropped.

TensorFlow 2.21 prints its C++ start-up lines (``I0000 ... oneDNN``, ``E0000 ...
cuda_platform.cc:52] failed call to cuInit ... (303)`` on a machine without a GPU) before
any of its log settings apply: ``TF_CPP_MIN_LOG_LEVEL``, ``ABSL_MIN_LOG_LEVEL`` and
``GLOG_minloglevel`` do not hide them. Beam logs ``apitools not found ...`` when it is
imported and ``Resource module is not available ...`` from RunInference through the root
logger. Two layers keep the console readable:

* :func:`configure_logging` sets the level of the libraries' Python loggers and installs
  one root handler whose :class:`NoiseFilter` drops the known harmless messages.
* :class:`StderrFilter` (used by the console script only) routes file descriptor 2 through
  a pipe and copies every line except native INFO lines and the known noise to the real
  stderr; child processes (Beam's multi-processing workers) inherit the pipe, so their
  output is filtered too. Real errors (native ``E``/``F`` lines that are not known noise,
  Python warnings and errors, tracebacks, this program's own lines) pass through.

Verbosity: ``--quiet`` (-1) errors only, default (0) warnings and errors, ``--verbose`` (1)
everything, unfiltered.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings

QUIET = -1
DEFAULT = 0
VERBOSE = 1

LIBRARY_LOGGERS = ("apache_beam", "absl", "tensorflow", "keras", "h5py", "matplotlib", "PIL", "urllib3")
"""Python loggers of the libraries, set to the verbosity's level."""

RERAISED_LOGGERS = ("apache_beam.runners.common",)
"""Loggers whose errors are always raised again: Beam logs a failing DoFn's traceback here, then
the job fails with the same exception, which the command reports in its one error line
(``--debug`` adds the traceback, ``--verbose`` shows these logs too)."""

NOISE = tuple(
    re.compile(pattern)
    for pattern in (
        r"apitools not found",
        r"Resource module is not available",
        r"Discarding unparseable args",
        r"oneDNN custom operations are on",
        r"TensorFlow binary is optimized to use available CPU instructions",
        r"To enable the following instructions",
        r"rebuild TensorFlow with the appropriate compiler flags",
        r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
        r"failed call to cuInit",
        r"Unable to register cu(DNN|FFT|BLAS) factory",
        r"computation placer already registered",
        r"Could not find cuda drivers",
        r"TF-TRT Warning",
        r"No semi_persistent_directory found",
        r"Worker: severity: (INFO|DEBUG)",
        # Beam 2.70 (pinned for the Flink runner) warns at pipeline construction about DoFns whose
        # generator also has a bare `return` (this package's and Beam's own _ReadMatchesFn).
        r"Using yield and return in the process method of",
        r"crcmod package not found",
        # Each Predictor traces its one tf.function once (a fixed input signature); TensorFlow still
        # warns after five such functions of the same code in one process (several models loaded).
        r"triggered tf\.function retracing",
    )
)
"""Messages known to be harmless on a CPU machine (dropped unless ``--verbose``)."""

RERAISED = tuple(
    re.compile(pattern)
    for pattern in (
        # Beam's S3 filesystem logs a failed upload (with a traceback) and raises the error again;
        # the shard writer names it in the command's one line (issue 33: a lost server is one line).
        r"^Error in _start_upload while inserting file ",
        r"^HTTP error while (requesting|deleting) file ",
        # A portable runner (Flink) logs its failed job's worker traceback, then raises the job's
        # failure; the command's line names the worker's error (scoring/summary.worker_error).
        r"^java\.[\w.$]+(Exception|Error)\b",  # e.g. java.net.ConnectException: the JobManager lost
    )
)
"""Log records of errors that are raised again and reported in the command's error line (dropped
unless ``--verbose``, as the records of :data:`RERAISED_LOGGERS`)."""

NATIVE_LOG = re.compile(r"^(?P<severity>[IWEF])\d{4} \d{2}:\d{2}:\d+\.\d+\s+\d+\s+\S+:\d+\]")
"""An absl/glog line from TensorFlow's C++ runtime: ``E0000 00:00:1764 123 file.cc:52] ...``."""

PYTHON_LOG = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]")
"""A line of Python's default log format (``INFO:name:message``, also Beam workers' ``INFO ...``)."""

PROGRESS = re.compile(r"^mnist-batch \w+: progress: ")
"""This program's progress lines (hidden by ``--quiet``)."""


def is_noise(text: str) -> bool:
    """True for a message known to be harmless (start-up chatter of TensorFlow and Beam)."""
    return any(p.search(text) for p in NOISE)


def keep_line(line: str, verbosity: int = DEFAULT) -> bool:
    """Whether a line written to stderr reaches the console at this verbosity.

    Args:
      line: one line of output, with or without its newline.
      verbosity: :data:`QUIET`, :data:`DEFAULT` or :data:`VERBOSE`.

    Returns:
      False for known noise, native INFO lines, Python INFO/DEBUG lines (and, with
      ``--quiet``, warnings and progress lines); True for everything else.
    """
    if verbosity >= VERBOSE:
        return True
    if is_noise(line):
        return False
    native = NATIVE_LOG.match(line)
    if native:
        return native["severity"] in ("EF" if verbosity <= QUIET else "WEF")
    python = PYTHON_LOG.match(line)
    if python:
        dropped = ("DEBUG", "INFO", "WARNING") if verbosity <= QUIET else ("DEBUG", "INFO")
        return python["level"] not in dropped
    return not (verbosity <= QUIET and PROGRESS.match(line))


class NoiseFilter(logging.Filter):
    """Drops the known harmless log records (see :data:`NOISE`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not is_noise(message) and not any(p.search(message) for p in RERAISED)


class ConsoleHandler(logging.StreamHandler):
    """The one root handler this program installs (replaced, not duplicated, on each call).

    It writes to whatever ``sys.stderr`` is at the time of each record (as logging's own
    last-resort handler does), so a caller that swaps ``sys.stderr`` (a test capturing
    output) never leaves it writing to a closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def level_for(verbosity: int) -> int:
    """The Python logging level of a verbosity."""
    if verbosity >= VERBOSE:
        return logging.INFO
    return logging.ERROR if verbosity <= QUIET else logging.WARNING


LIBRARY_WARNING_MODULES = (r"apache_beam(\.|$)", r"tensorflow(\.|$)", r"keras(\.|$)")
"""Modules whose Python warnings are hidden at the default verbosity."""


def configure_logging(verbosity: int = DEFAULT) -> None:
    """Sets the libraries' log levels and installs the filtered root handler.

    Also sets ``TF_CPP_MIN_LOG_LEVEL`` (0 with ``--verbose``, else 2 unless already set) for
    the TensorFlow messages that honour it.
    """
    level = level_for(verbosity)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    if verbosity < VERBOSE:
        handler.addFilter(NoiseFilter())
    handler.setLevel(level)
    root.addHandler(handler)
    if verbosity >= VERBOSE:
        root.setLevel(logging.INFO)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in RERAISED_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity >= VERBOSE else logging.CRITICAL)
    if verbosity >= VERBOSE:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Python warnings raised inside the libraries (Beam's batch-size estimator: "Polyfit may be
        # poorly conditioned", "divide by zero") say nothing a user can act on; --verbose shows them.
        for package in LIBRARY_WARNING_MODULES:
            warnings.filterwarnings("ignore", module=package)


class StderrFilter:
    """Context manager: file descriptor 2 goes through :func:`keep_line` until exit.

    Works below Python, so it also filters what native code (TensorFlow's C++ runtime)
    and child processes write. With ``--verbose`` it does nothing.
    """

    def __init__(self, verbosity: int = DEFAULT) -> None:
        self.verbosity = verbosity
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StderrFilter:
        if self.verbosity >= VERBOSE:
            return self
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(self._saved)), daemon=True)
        self._thread.start()
        return self

    def _pump(self, read_end: int, out_fd: int) -> None:
        with os.fdopen(read_end, "rb") as source, os.fdopen(out_fd, "wb", buffering=0) as sink:
            for raw in source:
                if keep_line(raw.decode("utf-8", "replace"), self.verbosity):
                    sink.write(raw)

    def __exit__(self, *exc_info) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes our write end; the pump ends once child processes let go too
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
