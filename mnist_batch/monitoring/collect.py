"""One record per committed run, from its row of the runs table and its ``summary.json`` (never its
prediction rows).

The runs table (``ROOT/runs/``, one typed row per committed run, written in the run's commit)
gives each run's identity (``run_id``, ``model_id``), its commit time (a timestamp: the order of
the runs and the x axis of the page) and its counts. The summary holds what only it has: errors
by stage, skipped by reason, predicted class counts, a
:data:`~mnist_batch.metrics.CONFIDENCE_BINS`-bin confidence histogram, mean confidence, the
model's held-out reference. Watching 1,000 runs reads 1,000 small JSON files and 1,000 one-row
Parquet files, whatever the number of rows behind them.

The two sources are checked against each other, and nothing is dropped silently: a committed run
without a readable row (scored before the runs table existed, or its row lost) is judged from its
summary alone; a row that disagrees with its summary, and a row whose run is not committed (no
``_SUCCESS``: a commit in progress or cut short), are reported (:func:`runs_table_notes`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mnist_batch.errors import MnistBatchError
from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.runstore import fs
from mnist_batch.runstore.history import RunInfo, committed_runs
from mnist_batch.runstore.layout import table_partitions
from mnist_batch.runstore.runs import read_run_table
from mnist_batch.tables import COL_RUNTIME_MODEL_ID, LAYOUT_FILE, RUNS_TABLE, SUMMARY_FILE

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
    row: dict[str, Any] | None = None
    """The run's row of the runs table (:data:`~mnist_batch.tables.RUNS_SCHEMA` values); None without one."""
    row_problem: str | None = None
    """Why ``row`` is missing, or how it disagrees with the summary; None when the two agree."""

    @property
    def counts(self) -> dict[str, int]:
        """The run's counts: from its runs-table row when it has one (typed, written at commit), else its summary."""
        if self.row is not None:
            return {k: int(self.row.get(k) or 0) for k in COUNT_KEYS}
        return {k: int(v or 0) for k, v in (self.summary.get("counts") or {}).items()}

    @property
    def model_id(self) -> str:
        return str((self.row or {}).get("model_id") or self.summary.get("model_id") or "")

    @property
    def runtime_model_id(self) -> str:
        return str((self.row or {}).get(COL_RUNTIME_MODEL_ID) or self.summary.get(COL_RUNTIME_MODEL_ID) or "")

    @property
    def committed_at(self) -> datetime.datetime | None:
        """When the run was committed (UTC): its runs-table row's ``committed_at``, else its summary's; None if neither."""
        if self.row is not None and self.row.get("committed_at") is not None:
            return self.row["committed_at"]
        return parse_time(self.summary.get("committed_at"))

    @property
    def time(self) -> datetime.datetime:
        """Where the run sits in time: its commit time, else (nothing says when) midnight UTC of its ``dt``."""
        return self.committed_at or datetime.datetime.fromisoformat(self.dt).replace(tzinfo=datetime.UTC)

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
    def not_digit_rate(self) -> float | None:
        """Rows flagged not a digit / scored; None for a model without the check (or a run before it)."""
        flagged = (self.row or {}).get("not_digit") if self.row is not None else None
        if flagged is None:
            flagged = (self.summary.get("counts") or {}).get("not_digit")
        scored = self.counts.get("scored", 0)
        return float(flagged) / scored if flagged is not None and scored else None

    @property
    def sort_key(self) -> tuple[datetime.datetime, str, str]:
        """Commit order: commit time (:attr:`time`), then dt and run id for runs committed at the same instant."""
        return (self.time, self.dt, self.run)


COUNT_KEYS = ("matched", "scored", "errors", "skipped", "low_confidence", "blank", "labelled")
"""The counts a runs-table row and a summary's ``counts`` both hold."""


def parse_time(text: object) -> datetime.datetime | None:
    """An ISO 8601 time from a summary as an aware datetime (UTC when it names no zone); None if absent or bad."""
    try:
        when = datetime.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.UTC) if when is not None and when.tzinfo is None else when


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


NO_ROW = "no row in"
"""How :func:`read_runs_row` begins the problem of a committed run that has no row at all."""
MAX_NO_ROW_NOTES = 5
"""Past this many committed runs without a row (a store scored before the runs table existed), one
note says how many and which, instead of a line per run in every nightly log."""


def read_runs_row(run: RunInfo) -> tuple[dict[str, Any] | None, str | None]:
    """``(row, None)``: the run's one row of the runs table; ``(None, why)`` when it has none,
    several, or the shard cannot be read (never raises)."""
    folder = run.table_dir(RUNS_TABLE)
    try:
        table = read_run_table(run, RUNS_TABLE)
    except Exception as exc:  # noqa: BLE001 -- a damaged shard: this run's row only
        return None, f"its row in {folder} cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    if table.num_rows == 1:
        return table.to_pylist()[0], None
    if table.num_rows == 0:
        return None, f"{NO_ROW} {folder} (committed before the runs table existed, or its row was lost)"
    return None, f"{table.num_rows} rows in {folder} (expected one)"


def disagreement(row: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """How a runs-table row and its run's readable summary disagree (model, commit time, counts); None if they agree."""
    counts = summary.get("counts") or {}
    diffs = []
    if row.get("model_id") != summary.get("model_id"):
        diffs.append(f"model_id {str(row.get('model_id'))[:8]} vs {str(summary.get('model_id'))[:8]}")
    if row.get("committed_at") != parse_time(summary.get("committed_at")):
        diffs.append(f"committed_at {row.get('committed_at')} vs {summary.get('committed_at')}")
    diffs += [
        f"{k} {row.get(k)} vs {counts[k]}" for k in COUNT_KEYS if k in counts and (row.get(k) or 0) != (counts[k] or 0)
    ]
    return f"its row in the runs table disagrees with its summary: {', '.join(diffs)}" if diffs else None


def read_run(run: RunInfo) -> RunRecord:
    """One committed run's record: its summary and its runs-table row, checked against each other."""
    summary, why = read_summary(run)
    row, problem = read_runs_row(run)
    if row is not None and why is None:
        problem = disagreement(row, summary)
    return RunRecord(run.dt, run.run_id, summary, why, row, problem)


def collect_runs(root: str) -> list[RunRecord]:
    """Every committed run under ``root`` (the ``_SUCCESS`` markers), in commit order (:attr:`RunRecord.sort_key`)."""
    check_root(root)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        records = list(pool.map(read_run, committed_runs(root)))
    return sorted(records, key=lambda r: r.sort_key)


def uncommitted_rows(root: str, records: list[RunRecord]) -> list[tuple[str, str]]:
    """``(dt, run)`` of the runs-table partitions whose run is not committed (no ``_SUCCESS`` marker)."""
    committed = {(r.dt, r.run) for r in records}
    return sorted(set(table_partitions(root, RUNS_TABLE)) - committed)


def no_row_note(root: str, missing: list[RunRecord]) -> str:
    """One note for many committed runs without a row: how many, the first and the last (commit order)."""
    first, last = missing[0], missing[-1]
    return (
        f"runs table: {len(missing):,} committed runs have {NO_ROW} {fs.join(root, RUNS_TABLE)} (committed before "
        f"the runs table existed, or their rows were lost), from run {first.run} (dt={first.dt}) to run {last.run} "
        f"(dt={last.dt}): judged from their summaries"
    )


def runs_table_notes(root: str, records: list[RunRecord]) -> list[str]:
    """One line per run where the runs table and the committed summaries do not tell the same story
    (runs without a row: one line in all past :data:`MAX_NO_ROW_NOTES`)."""
    missing = [r for r in records if r.row is None and (r.row_problem or "").startswith(NO_ROW)]
    grouped = {(r.dt, r.run) for r in missing} if len(missing) > MAX_NO_ROW_NOTES else set()
    notes = [no_row_note(root, missing)] if grouped else []
    notes += [
        f"runs table: run {r.run} (dt={r.dt}): {r.row_problem}"
        for r in records
        if r.row_problem and (r.dt, r.run) not in grouped
    ]
    notes += [
        f"runs table: run {run} (dt={dt}) has a row in {fs.join(root, RUNS_TABLE)} but is not committed "
        f"(no _SUCCESS: a commit in progress or cut short; `mnist-batch runs clean {root}`): not judged"
        for dt, run in uncommitted_rows(root, records)
    ]
    return notes
