"""The latest committed run's figures in Prometheus' text format, for node_exporter's textfile collector.

``mnist-batch monitor ROOT --output DIR --metrics-file /var/lib/node_exporter/textfile/mnist_batch.prom``
writes, after each monitor pass, one gauge family per figure, every sample labelled with the
runs root (``root="..."``) so that several roots can share one collector folder:

* ``mnist_batch_monitor_runs``: committed runs under the root;
* ``mnist_batch_latest_run_info{run, dt, model_id}`` (value 1) and
  ``mnist_batch_latest_run_committed_timestamp_seconds``;
* ``mnist_batch_latest_run_files{outcome}``: matched, scored, errors, skipped, low_confidence,
  blank, labelled;
* ``mnist_batch_latest_run_accuracy`` (only when the run had labels);
* ``mnist_batch_latest_run_status``: 0 ok, 1 warn, 2 alert, 3 unreadable;
* ``mnist_batch_latest_run_check_status{check}`` (same codes) and
  ``mnist_batch_latest_run_check_value{check}`` (the PSI, rate or count the check judged, when it
  has one);
* ``mnist_batch_latest_run_failed``: 1 when a ``--fail-on`` check alerted (the command's exit 5);
* ``mnist_batch_monitor_last_run_timestamp_seconds``: when this file was written (a stale file
  means the monitor stopped running).

The file is written whole or not at all (a temporary file in the same folder, then a rename), so
the collector never reads half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence

from mnist_batch.monitoring.checks import ALERT, OK, UNREADABLE, WARN, status_of
from mnist_batch.monitoring.collect import COUNT_KEYS
from mnist_batch.monitoring.monitor import MonitorResult

STATUS_CODES = {OK: 0, WARN: 1, ALERT: 2, UNREADABLE: 3}
"""A status as a number an alert rule can compare."""

SUFFIX = ".prom"
"""node_exporter's textfile collector reads only files with this suffix."""

HELP = {
    "monitor_runs": "Committed runs under the runs root.",
    "latest_run_info": "The latest committed run (value 1; its identity in the labels).",
    "latest_run_committed_timestamp_seconds": "When the latest run was committed (Unix time).",
    "latest_run_files": "Files of the latest run by outcome.",
    "latest_run_accuracy": "Accuracy of the latest run on its labelled files.",
    "latest_run_status": "Status of the latest run: 0 ok, 1 warn, 2 alert, 3 unreadable.",
    "latest_run_check_status": "Status of each check of the latest run: 0 ok, 1 warn, 2 alert, 3 unreadable.",
    "latest_run_check_value": "The figure each check of the latest run judged (PSI, rate, count).",
    "latest_run_failed": "1 when a --fail-on check of the latest run alerted (monitor exits 5), else 0.",
    "monitor_last_run_timestamp_seconds": "When the monitor last wrote this file (Unix time).",
}


def label_value(text: str) -> str:
    """A label value escaped as the text format requires (backslash, double quote, newline)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample(name: str, labels: dict[str, str], value: float) -> str:
    """One sample line: ``mnist_batch_NAME{k="v",...} VALUE``."""
    inside = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
    return f"mnist_batch_{name}{{{inside}}} {float(value)!r}"


def prometheus_text(root: str, result: MonitorResult, fail_on: Sequence[str], now: float | None = None) -> str:
    """The figures of ``result`` (one monitor pass over ``root``) as Prometheus text (ends with a newline)."""
    base = {"root": root}
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    samples["monitor_runs"].append(sample("monitor_runs", base, len(result.records)))
    if result.latest is not None:
        record, checks = result.latest
        info = {**base, "run": record.run, "dt": record.dt, "model_id": record.model_id[:12]}
        samples["latest_run_info"].append(sample("latest_run_info", info, 1))
        if record.committed_at is not None:
            stamp = record.committed_at.timestamp()
            samples["latest_run_committed_timestamp_seconds"].append(
                sample("latest_run_committed_timestamp_seconds", base, stamp)
            )
        counts = record.counts
        for key in COUNT_KEYS:
            samples["latest_run_files"].append(sample("latest_run_files", {**base, "outcome": key}, counts.get(key, 0)))
        accuracy = record.summary.get("accuracy")
        if isinstance(accuracy, int | float) and math.isfinite(accuracy):
            samples["latest_run_accuracy"].append(sample("latest_run_accuracy", base, accuracy))
        status = UNREADABLE if record.unreadable else status_of(checks)
        samples["latest_run_status"].append(sample("latest_run_status", base, STATUS_CODES.get(status, 2)))
        for c in checks:
            labels = {**base, "check": c.check}
            samples["latest_run_check_status"].append(
                sample("latest_run_check_status", labels, STATUS_CODES.get(c.status, 2))
            )
            if isinstance(c.value, int | float) and math.isfinite(c.value):
                samples["latest_run_check_value"].append(sample("latest_run_check_value", labels, c.value))
        failed = 1 if result.failed_checks(fail_on) else 0
        samples["latest_run_failed"].append(sample("latest_run_failed", base, failed))
    now = time.time() if now is None else now
    samples["monitor_last_run_timestamp_seconds"].append(sample("monitor_last_run_timestamp_seconds", base, now))
    lines = []
    for name, rows in samples.items():
        if rows:
            lines += [f"# HELP mnist_batch_{name} {HELP[name]}", f"# TYPE mnist_batch_{name} gauge", *rows]
    return "\n".join(lines) + "\n"


def write_metrics_file(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` whole: a temporary file beside it, flushed, then renamed over it.

    Raises:
      ValueError: ``path`` does not end in ``.prom`` (the collector would never read it).
      OSError: the folder is missing or not writable.
    """
    if not path.endswith(SUFFIX):
        raise ValueError(
            f"--metrics-file {path}: must end in {SUFFIX} (node_exporter's textfile collector reads only those)"
        )
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mnist_batch-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
