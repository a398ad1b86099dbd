"""Progress lines for long runs: files done (of how many), images/s and the time left.

Local runners print them from their workers (:class:`ProgressLine`). On a cluster the workers'
output goes to the workers' logs, so the launcher prints them itself while it waits
(:class:`StagedProgress`), from what the workers leave in the run's staging folder: each worker's
files done so far (:class:`ProgressFile`, ``<staging>/_progress/<worker>.json``, rewritten every
few seconds) and the rows of the shards they have finished. Any runner, any filesystem the run
store uses, no runner-specific API.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import NamedTuple

from mnist_batch.runstore import fs
from mnist_batch.runstore.shards import FinishedRows
from mnist_batch.tables import ERRORS_TABLE, PREDICTIONS_TABLE, PROGRESS_DIR

log = logging.getLogger(__name__)


def progress_every_s() -> float:
    """Seconds between progress lines: 5, or ``MNIST_BATCH_PROGRESS_S`` (e.g. 60 for a scheduler's log)."""
    try:
        return max(float(os.environ.get("MNIST_BATCH_PROGRESS_S", "5")), 0.05)
    except ValueError:
        return 5.0


def progress_text(done: int, total: int | None, rate: float) -> str:
    """``"1,200 of 10,000 files done (12 %), 600 files/s, ETA 15 s"`` (no total and ETA when unknown)."""
    if not total:
        return f"{done:,} files done, {rate:,.0f} files/s"
    left = max(total - done, 0) / rate if rate > 0 else 0.0
    eta = f"{left:.0f} s" if left < 90 else f"{left // 60:.0f} min {left % 60:02.0f} s"
    return f"{done:,} of {total:,} files done ({100 * done / total:.0f} %), {rate:,.0f} files/s, ETA {eta}"


class ProgressLine:
    """Counts done items and prints ``mnist-batch score: progress: ...`` to stderr at most every ``every_s``.

    The rate is counted from the first item (not from loading the model). ``total`` (when known)
    adds the share done and the time left.
    """

    def __init__(self, every_s: float | None = None) -> None:
        self.every_s = progress_every_s() if every_s is None else every_s
        self.total: int | None = None
        self.done = 0
        self._start = self._last = 0.0

    def add(self, n: int = 1) -> None:
        now = time.monotonic()
        if self.done == 0:
            self._start = self._last = now
        self.done += n
        if now - self._last >= self.every_s:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            print(
                f"mnist-batch score: progress: {progress_text(self.done, self.total, rate)} (worker {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )


def progress_dir(staging: str) -> str:
    """Where the workers of the attempt staged in ``staging`` write their progress files."""
    return fs.join(staging, PROGRESS_DIR)


class ProgressFile:
    """One worker's files done so far, in ``FOLDER/<host>-<pid>-<random>.json``:
    ``{"files": N, "started": <epoch s of its first file>, "updated": <epoch s>}``.

    :meth:`add` rewrites it at most every ``every_s`` seconds, :meth:`write` (at the end of a
    bundle) whenever the count moved. Each write is whole (:func:`fs.write_atomic`: temp file +
    rename locally, one ``PUT`` on object stores), so a reader sees the previous count or the new
    one. The name is new for each DoFn instance: a bundle that a runner retries (a task Flink
    restarts) is counted again by the instance that redoes it, so the sum can run ahead of the
    truth by the files of the failed attempts (:class:`StagedProgress`). A write that fails is
    logged once, at debug level, and never fails the run: progress is not worth a failed job.
    """

    def __init__(self, folder: str, every_s: float | None = None) -> None:
        self.every_s = progress_every_s() if every_s is None else every_s
        self.path = fs.join(folder, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json")
        self.done = 0
        self.started: float | None = None
        self._written = 0
        self._last = time.monotonic()
        self._failed = False

    def add(self, n: int = 1) -> None:
        if self.started is None:
            self.started = time.time()
        self.done += n
        if time.monotonic() - self._last >= self.every_s:
            self.write()

    def write(self) -> None:
        """Writes the count now, if it moved since the last write."""
        self._last = time.monotonic()
        if self.done == self._written:
            return
        try:
            record = {"files": self.done, "started": self.started, "updated": time.time()}
            fs.write_atomic(self.path, json.dumps(record))
            self._written = self.done
        except Exception as exc:  # noqa: BLE001 - a progress file is never worth failing the run
            if not self._failed:
                self._failed = True
                log.debug("progress file %s not written (the run goes on without it): %s", self.path, exc)


class Reported(NamedTuple):
    """What the workers' progress files say together: files done, and when the first of them began."""

    files: int
    started: float | None


def reported(folder: str) -> Reported:
    """The sum of the workers' progress files in ``folder`` (0 files when there are none), and the
    earliest ``started`` among them (epoch seconds; None when none says).

    Only ``*.json`` files count (a local write's temp file is not one); a file that cannot be read
    or is not ``{"files": <count>, ...}`` (garbled, or gone with the staging folder) is skipped.
    """
    files, started = 0, None
    for path in fs.list_files(folder):
        if not path.endswith(".json"):
            continue
        try:
            record = json.loads(fs.read_text(path))
            count, began = record["files"], record.get("started")
        except Exception:  # noqa: BLE001 - garbled, partial or deleted meanwhile: the next look counts it
            continue
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            continue
        files += count
        if isinstance(began, (int, float)) and not isinstance(began, bool):
            started = began if started is None else min(started, began)
    return Reported(files, started)


class StagedProgress:
    """The launcher's progress line while a job runs elsewhere, every ``every_s`` seconds.

    ``mnist-batch score: progress: 12,000 files done, 610 files/s (reported by the workers)``:
    the larger of two counts from ``staging``, the sum of the workers' progress files
    (:class:`ProgressFile`, rewritten every few seconds while they work) and the rows of the
    predictions and errors shards they have finished (the only count when the workers write no
    progress files). A line appears only when the count moved. Files/s is counted from the first
    file any worker began (the files' ``started``), so the job's start-up (shipping jars, starting
    harnesses) does not dilute it; without one, from the start of the wait.

    Both counts can run ahead of the truth by the work of failed attempts until they are
    retried (the workers' files of a restarted task are not overwritten but added to): the line
    is a progress line, the summary's counts are exact. Use it as a context manager around the
    wait for the job.
    """

    def __init__(self, staging: str, every_s: float | None = None) -> None:
        self.every_s = progress_every_s() if every_s is None else every_s
        self._progress = progress_dir(staging)
        self._rows = FinishedRows([fs.join(staging, t) for t in (PREDICTIONS_TABLE, ERRORS_TABLE)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="StagedProgress", daemon=True)

    def count(self) -> tuple[int, float | None]:
        """Files done (the larger of the two counts), and when the workers' first file began (if they say)."""
        files, started = reported(self._progress)
        return max(files, self._rows.count()), started

    def _watch(self) -> None:
        start, shown = time.monotonic(), 0
        while not self._stop.wait(self.every_s):
            try:
                done, started = self.count()
            except Exception:  # noqa: BLE001 - a listing that failed (the staging folder went): next time
                continue
            if done > shown:
                shown = done
                elapsed = time.time() - started if started is not None else 0.0
                if elapsed <= 0:  # no worker said when it began (or its clock is ahead): since the wait began
                    elapsed = time.monotonic() - start
                rate = done / max(elapsed, 1e-9)
                print(
                    f"mnist-batch score: progress: {progress_text(done, None, rate)} (reported by the workers)",
                    file=sys.stderr,
                    flush=True,
                )

    def __enter__(self) -> StagedProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
