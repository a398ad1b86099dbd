"""Progress lines for long runs: files done (of how many), images/s and the time left.

Local runners print them from their workers (:class:`ProgressLine`). On a cluster the workers'
output goes to the workers' logs, so the launcher prints them itself while it waits
(:class:`StagedProgress`), from the rows in the shards the workers have finished in the run's
staging folder: any runner, any filesystem the run store uses, no runner-specific API.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from mnist_batch.runstore import fs
from mnist_batch.runstore.shards import FinishedRows
from mnist_batch.tables import ERRORS_TABLE, PREDICTIONS_TABLE


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


class StagedProgress:
    """The launcher's progress line while a job runs elsewhere, every ``every_s`` seconds.

    ``mnist-batch score: progress: 12,000 files done, 610 files/s (shards finished on the
    workers)``: the rows of the finished predictions and errors shards in ``staging``, so a
    line appears as the workers finish bundles (no line while nothing new is finished). Use it
    as a context manager around the wait for the job.
    """

    def __init__(self, staging: str, every_s: float | None = None) -> None:
        self.every_s = progress_every_s() if every_s is None else every_s
        self._rows = FinishedRows([fs.join(staging, t) for t in (PREDICTIONS_TABLE, ERRORS_TABLE)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="StagedProgress", daemon=True)

    def _watch(self) -> None:
        start, shown = time.monotonic(), 0
        while not self._stop.wait(self.every_s):
            done = self._rows.count()
            if done > shown:
                shown = done
                rate = done / max(time.monotonic() - start, 1e-9)
                print(
                    f"mnist-batch score: progress: {progress_text(done, None, rate)} (shards finished on the workers)",
                    file=sys.stderr,
                    flush=True,
                )

    def __enter__(self) -> StagedProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
