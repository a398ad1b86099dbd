"""One record per committed run, from its ``summary.json`` only (never its prediction rows).

A summary holds the run's aggregates (counts, errors by stage, skipped by reason, predicted
class counts, a :data:`~mnist_batch.metrics.CONFIDENCE_BINS`-bin confidence histogram, mean
confidence, accuracy and macro-F1 where labels exist), so watching 1,000 runs reads 1,000 small
JSON files, whatever the number of rows behind them.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mnist_batch.errors import MnistBatchError
from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.runstore import fs
from mnist_batch.runstore.history import RunInfo, committed_runs
from mnist_batch.tables import LAYOUT_FILE, SUMMARY_FILE

DEFAULT_RUNTIME = "keras"
READ_THREADS = 16
"""Summaries read at once (matters on object stores, where each read is a round trip)."""


@dataclasses.dataclass
class RunRecord:
    """What monitoring knows about one committed run (plain Python values)."""

    dt: str
    run: str
    summary: dict[str, Any]
    unreadable: str | None = None
    """Why the run's summary cannot be trusted (unreadable, not a JSON object, incomplete); None when fine.
    Such a run is a row with status ``unreadable``: never a reference, never a model-change baseline."""

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v or 0) for k, v in (self.summary.get("counts") or {}).items()}

    @property
    def model_id(self) -> str:
        return str(self.summary.get("model_id") or "")

    @property
    def model_name(self) -> str:
        return str(self.summary.get("model_name") or "")

    @property
    def model_label(self) -> str:
        """``cnn 1a2b3c4d``: a model as people read it."""
        return f"{self.model_name or 'model'} {self.model_id[:8]}".strip()

    @property
    def runtime(self) -> str:
        return str(self.summary.get("runtime", DEFAULT_RUNTIME))

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.summary.get("class_names") or []]

    @property
    def predicted_class_counts(self) -> np.ndarray:
        counts = self.summary.get("predicted_class_counts")
        return np.asarray(counts if counts is not None else [0] * len(self.class_names), np.int64)

    @property
    def confidence_histogram(self) -> np.ndarray:
        hist = self.summary.get("confidence_histogram")
        return np.asarray(hist if hist is not None else [0] * CONFIDENCE_BINS, np.int64)

    def rate(self, numerator: str, denominator: str) -> float | None:
        """``counts[numerator] / counts[denominator]``; None when the denominator is 0."""
        counts = self.counts
        den = counts.get(denominator, 0)
        return counts.get(numerator, 0) / den if den else None

    @property
    def error_rate(self) -> float | None:
        return self.rate("errors", "matched")

    @property
    def low_confidence_rate(self) -> float | None:
        return self.rate("low_confidence", "scored")

    @property
    def blank_rate(self) -> float | None:
        return self.rate("blank", "scored")

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.dt, str(self.summary.get("committed_at") or ""), self.run)


def check_root(root: str) -> None:
    """Raises MnistBatchError unless ``root`` is a runs root."""
    if not fs.exists(fs.join(root, LAYOUT_FILE)):
        raise MnistBatchError(f"monitor: {root} is not a runs root (no {LAYOUT_FILE}; score with --layout runs)")


REQUIRED_KEYS = ("model_id", "counts", "committed_at")
"""What every summary written by ``score`` holds; a summary without one of them is incomplete."""
REQUIRED_COUNTS = ("matched", "scored", "errors")


def summary_problem(data: Any) -> str | None:
    """Why ``data`` is not a usable run summary (one line), or None."""
    if not isinstance(data, dict):
        return f"not a JSON object ({type(data).__name__})"
    missing = [k for k in REQUIRED_KEYS if not data.get(k)]
    counts = data.get("counts")
    if isinstance(counts, dict):
        missing += [f"counts.{k}" for k in REQUIRED_COUNTS if not isinstance(counts.get(k), int)]
    elif "counts" not in missing:
        missing.append("counts")
    return f"incomplete summary: no {', '.join(missing)}" if missing else None


def read_summary(run: RunInfo) -> tuple[dict[str, Any], str | None]:
    """``(summary, None)``, or ``({}, reason)`` when the summary cannot be read or trusted (never raises)."""
    path = fs.join(run.meta_dir, SUMMARY_FILE)
    try:
        data = json.loads(fs.read_text(path))
    except Exception as exc:  # noqa: BLE001 -- any filesystem's error, or JSON cut short: this run only
        return {}, f"unreadable summary {path} ({type(exc).__name__}: {str(exc)[:200]})"
    problem = summary_problem(data)
    if problem is not None:
        return {}, f"{path}: {problem}"
    return data, None


def collect_runs(root: str) -> list[RunRecord]:
    """Every committed run under ``root``, oldest first (dt, then commit time, then run id)."""
    check_root(root)
    runs = committed_runs(root)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        summaries = list(pool.map(read_summary, runs))
    records = [RunRecord(r.dt, r.run_id, s, why) for r, (s, why) in zip(runs, summaries, strict=True)]
    return sorted(records, key=lambda r: r.sort_key)
