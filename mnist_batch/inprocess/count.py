"""The in-process progress line's total: the image files counted by a child process.

The in-process job lists as it scores, so its progress line knows the files done and the rate but
not how many are left. Once a run has gone on for one progress interval (5 s; a shorter run never
pays for this), :class:`FileCounter` starts ``python -m mnist_batch.inprocess.count`` at the lowest
CPU priority. It lists the same patterns the same way (:func:`~mnist_batch.inprocess.engine.list_entries`)
and prints the number of image files; from then on the line shows the share done and the time
left, as the Beam job's does. The count is a second listing (~5 us a file against ~250 us to score
it) in a process of its own, so the scoring process never waits for it; a count that fails or is
not done by the end leaves the line without a total, and never fails the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from mnist_batch.scoring.decode_pool import module_process
from mnist_batch.scoring.progress import ProgressLine

COUNTER_NICENESS = 19
"""The counting process takes only the cycles scoring leaves."""


class FileCounter:
    """One counting process for ``patterns`` (with ``--extensions`` and ``--output``, as the job lists).

    The request goes in on stdin (an ``@LIST`` of many patterns would not fit a command line), written
    by a thread so that the scoring process never waits for the child's start; the child exits early
    when the scoring process is gone (killed), never outliving it by more than a few folders.
    """

    def __init__(self, patterns: Sequence[str], extensions: Sequence[str], output: str) -> None:
        request = json.dumps({"patterns": list(patterns), "extensions": list(extensions), "output": output})
        self._process = module_process(
            __name__, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        threading.Thread(target=self._send, args=(request,), name="progress-count", daemon=True).start()
        self._total: int | None = None

    def _send(self, request: str) -> None:
        with contextlib.suppress(OSError):  # a child gone at once: no total
            self._process.stdin.write(request.encode())
            self._process.stdin.close()

    def total(self) -> int | None:
        """The count once the process has printed it (None before, or when it failed)."""
        if self._total is None and self._process.poll() == 0:
            try:
                self._total = int(self._process.stdout.read().strip())
            except ValueError:
                self._total = None
        return self._total

    def close(self) -> None:
        """Stops the process if it is still counting."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()


class CountedProgress:
    """The in-process job's progress line: files done and files/s, and, from the first interval on,
    the total that a :class:`FileCounter` finds (or ``total`` when the files were listed already)."""

    def __init__(
        self,
        line: ProgressLine,
        patterns: Sequence[str],
        extensions: Sequence[str],
        output: str,
        total: int | None = None,
    ) -> None:
        self._line, self._request = line, (list(patterns), list(extensions), output)
        self._line.total = total
        self._counter: FileCounter | None = None
        self._since = time.monotonic()

    def add(self, n: int) -> None:
        """``n`` more files done (scored or failed)."""
        line = self._line
        if line.total is None:
            if self._counter is None and time.monotonic() - self._since >= line.every_s:
                try:
                    self._counter = FileCounter(*self._request)
                except OSError:  # no process to spare: the line goes on without a total
                    self._since = float("inf")
            elif self._counter is not None:
                line.total = self._counter.total()
        line.add(n)

    def close(self) -> None:
        """Stops the counting process, if any is still running."""
        if self._counter is not None:
            self._counter.close()
            self._counter = None


def main() -> None:
    """The child: reads the request on stdin, prints the number of image files the listing finds."""
    from mnist_batch.inprocess.engine import list_entries
    from mnist_batch.scoring.listing import ListedFile

    os.nice(COUNTER_NICENESS)
    parent = os.getppid()
    spec = json.loads(sys.stdin.read())
    count = 0
    for n, item in enumerate(list_entries(spec["patterns"], spec["extensions"], spec["output"])):
        count += isinstance(item, ListedFile)
        if n % 4096 == 0 and os.getppid() != parent:
            return  # the scoring process is gone: nobody reads the count
    print(count, flush=True)


if __name__ == "__main__":
    main()
