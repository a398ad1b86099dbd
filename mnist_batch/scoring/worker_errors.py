"""A worker's model error (changed, damaged) or version skew, however a runner relays it, as one line (exit 2).

The DirectRunner re-raises a worker's exception with its step name appended (in process) or as
a ``RuntimeError`` holding the worker's traceback (multi-process, portable runners); both carry
the model layer's one-line message, which :func:`worker_model_errors` finds and re-raises alone.
Beam's own traceback log of that error is dropped (:class:`ModelErrorLogFilter`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from mnist_batch.models.errors import ModelError, model_error_in_text
from mnist_batch.scoring.storage_fn import VERSION_RE, WorkerVersionError

RUNNER_LOGGERS = (
    "apache_beam.runners.common",
    "apache_beam.runners.worker.sdk_worker",
    "apache_beam.runners.portability.local_job_service",
)
"""Where Beam logs a failing DoFn's traceback before re-raising it (in process, on workers, relayed from workers).

The portable runner also logs a job's error messages (a Flink job's worker traceback) on the root
logger (``logging.log``), which :func:`quiet_model_error_logs` filters as well."""


def is_model_error_text(text: str) -> bool:
    """True when ``text`` holds one of the model layer's one-line errors (changed, damaged)."""
    return model_error_in_text(text) is not None


class ModelErrorLogFilter(logging.Filter):
    """Drops Beam's traceback log of a model error raised while loading: the command line reports
    it as one line (:func:`worker_model_errors`), and the exception still propagates."""

    def filter(self, record: logging.LogRecord) -> bool:
        texts = [record.getMessage()]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(str(record.exc_info[1]))
        return not any(is_model_error_text(text) or VERSION_RE.search(text) for text in texts)


MODEL_ERROR_LOG_FILTER = ModelErrorLogFilter()


def quiet_model_error_logs() -> None:
    """Installs :data:`MODEL_ERROR_LOG_FILTER` on Beam's runner loggers in this process (idempotent)."""
    for logger in (*(logging.getLogger(name) for name in RUNNER_LOGGERS), logging.getLogger()):
        logger.addFilter(MODEL_ERROR_LOG_FILTER)


def worker_error_message(exc: BaseException) -> str | None:
    """The one-line model error (changed, damaged) a worker raised, found in what the runner re-raised."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        message = model_error_in_text(str(exc))
        if message:
            return message
        version = VERSION_RE.search(str(exc))
        if version:
            return version["message"]
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def worker_model_errors() -> Iterator[None]:
    """Turns a worker's model error, however the runner wraps it, into one ScoringError line (exit 2).

    Beam's own traceback log of that error is dropped too (:class:`ModelErrorLogFilter`).

    Raises:
      ModelError: the worker's message, without runner context or traceback.
    """
    quiet_model_error_logs()
    try:
        yield
    except Exception as exc:
        message = worker_error_message(exc)
        if message is None:
            raise
        if VERSION_RE.search(f"WorkerVersionError: {message}"):
            raise WorkerVersionError(message) from exc
        raise ModelError(message) from exc
