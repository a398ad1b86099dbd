"""A run's summary: the pipeline's statistics plus what the launcher knew, and its exit code."""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

from mnist_batch.errors import MnistBatchError
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.history import SKIP_ALREADY_SCORED

BEAM_STEP = re.compile(r" \[while running '[^']*'\]")
"""What Beam appends to the message of a DoFn's error: the graph's step, not the user's."""

EXIT_OK = 0
EXIT_TOO_MANY_ERRORS = 4
"""Exit code when every matched file failed, no image matched, or ``--max-error-rate`` was exceeded."""


def exit_code_for(summary: dict[str, Any], max_error_rate: float | None) -> tuple[int, str | None]:
    """(exit code, reason) from a summary: non-zero when nothing scored or too many errors."""
    counts = summary["counts"]
    matched, errors = counts["matched"], counts["errors"]
    if matched == 0:
        return EXIT_TOO_MANY_ERRORS, "no image files matched"
    if counts["scored"] == 0:
        return EXIT_TOO_MANY_ERRORS, f"every one of the {matched:,} matched files failed"
    if max_error_rate is not None and errors / matched > max_error_rate:
        return EXIT_TOO_MANY_ERRORS, f"error rate {errors / matched:.2%} is over --max-error-rate {max_error_rate:.2%}"
    return EXIT_OK, None


def run_summary(stats: dict[str, Any], launch_info: dict[str, Any], max_error_rate: float | None) -> dict[str, Any]:
    """The run's summary from the pipeline's stats and what the launcher knew; sets exit_code/failure."""
    summary = {**stats, **launch_info}
    incremental = launch_info.get("incremental")
    if incremental is not None:
        skipped = int(summary.get("skipped_by_reason", {}).get(SKIP_ALREADY_SCORED, 0))
        summary["incremental"] = {**incremental, "skipped": skipped}
    code, reason = exit_code_for(summary, max_error_rate)
    if code and incremental and incremental["enabled"] and summary["counts"]["matched"] == 0 and skipped > 0:
        code, reason = 0, None  # nothing new since the last run is a normal night, not a failure
    summary["exit_code"], summary["failure"] = code, reason
    now = time.time()
    wall = now - float(launch_info["started_at_epoch"])
    summary["wall_time_s"] = round(wall, 3)
    summary["images_per_s"] = round(summary["counts"]["matched"] / wall, 1) if wall > 0 else None
    # Milliseconds: two runs committed within one second must still order by commit (the runs table).
    summary["committed_at"] = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="milliseconds")
    return summary


def failure_line(exc: BaseException) -> str:
    """The user's error in an exception chain (a MnistBatchError if any), as one line."""
    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, MnistBatchError):
            line = str(cur).splitlines()[0] if str(cur) else type(cur).__name__
            return BEAM_STEP.sub("", line) if isinstance(cur, RunStoreError) else line  # the step is named
        cur = cur.__cause__ or cur.__context__
    relayed = worker_error(str(exc))
    if relayed is not None:
        return relayed
    text = str(exc).strip().splitlines()
    job = JOB_FAILED.match(text[0]) if text else None
    if job:  # a portable runner's job failed for the cluster's own reason (a JobManager lost ...)
        return f"the job {job['job']} ended {job['state']} on the cluster: {job['reason']}"
    return f"{type(exc).__name__}: {text[0] if text else ''}"


JOB_FAILED = re.compile(r"^Pipeline (?P<job>\S+) failed in state (?P<state>\w+): (?P<reason>.*)$")
"""The portable runner's failure of a job (its text, when it holds no worker traceback)."""
RELAYED = re.compile(r"^(?:[\w.]+: )*(?P<type>[\w.]+(?:Error|Exception)): (?P<message>\S.*)$")
"""A worker's exception as the last line of the traceback a portable runner relays in its job's
failure (``RuntimeError: botocore.exceptions.NoCredentialsError: Unable to ... [while running 'X']``)."""
NO_CREDENTIALS = (
    "; the workers found no credentials for the bucket: give their hosts the AWS_* variables, or pass "
    '--s3_access_key_id and --s3_secret_access_key (deploy/README.md, "Flink")'
)


def worker_error(text: str) -> str | None:
    """The worker's own error in a runner's failure holding its traceback, as one line: this package's
    errors by their message alone (they name their step), others by type, message and Beam's step."""
    if "Traceback (most recent call last)" not in text:
        return None
    for line in reversed(text.strip().splitlines()):
        found = RELAYED.match(line.strip())
        if found is None:
            continue
        kind, message = found["type"], found["message"]
        if kind.startswith("mnist_batch."):
            return BEAM_STEP.sub("", message)
        line = f"{kind.rsplit('.', 1)[-1]}: {message}"
        return line + NO_CREDENTIALS if kind.endswith("NoCredentialsError") else line
    return None
