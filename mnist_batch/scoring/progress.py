"""A progress line for long local runs: files done (of how many), images/s and the time left."""

from __future__ import annotations

import os
import sys
import time


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

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
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
