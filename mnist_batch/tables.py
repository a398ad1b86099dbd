"""The output contract: every Parquet schema, table name and folder name this tool writes.

Pure pyarrow (no Beam, no TensorFlow): the scoring sinks, the run store, the report, evaluation
and any downstream reader use these names, so the contract is declared once, here.

Flat layout (``score --output OUT``)::

    OUT/<table>/part-*.parquet            one Parquet data set per table (TABLES)
    OUT/summary.json                      the run's summary
    OUT/_SUCCESS                          commit marker, written last

Runs layout (``score --layout runs --output ROOT``; layout version :data:`LAYOUT_VERSION`)::

    ROOT/_mnist_batch_layout.json         LAYOUT_FILE: format name + layout version
    ROOT/<table>/dt=YYYY-MM-DD/run=ID/part-*.parquet     RUN_TABLES, Hive-partitioned
    ROOT/runs/dt=YYYY-MM-DD/run=ID/part-*.parquet        RUNS_TABLE: one typed row per committed run
    ROOT/_runs/dt=YYYY-MM-DD/run=ID/summary.json         run metadata (readers skip ``_`` paths)
    ROOT/_runs/dt=YYYY-MM-DD/run=ID/_SUCCESS             the run's commit marker
    ROOT/_staging/<attempt>/<table>/part-*.parquet       shards before their commit
    ROOT/_claims/<name>.json                              leases of live launches
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from mnist_batch import trust
from mnist_batch.constants import (
    COL_BLANK,
    COL_CONFIDENCE,
    COL_ERROR_TYPE,
    COL_LOW_CONFIDENCE,
    COL_MESSAGE,
    COL_MODEL_ID,
    COL_PATH,
    COL_PREDICTED_LABEL,
    COL_PROBABILITIES,
    COL_RUN_ID,
    COL_SCORED_AT,
    COL_STAGE,
    COL_TRUE_LABEL,
)

COL_NOT_DIGIT = "not_digit"
COL_NOT_DIGIT_SCORE = "not_digit_score"
COL_PREDICTED_CLASS = "predicted_class"
COL_TRUE_CLASS = "true_class"
COL_RUNTIME_MODEL_ID = "runtime_model_id"
"""sha256 of the runtime file that scored (``.tflite`` for LiteRT, the ``.keras`` file for Keras);
``model_id`` is always the model's identity, the sha256 of its ``.keras`` file (as in its card and
summary.json), in every table."""

ERROR_STAGES = ("read", "decode", "preprocess", "inference")
"""Values of ``errors.stage``."""

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field(COL_TRUE_LABEL, pa.int32()),
        pa.field(COL_TRUE_CLASS, pa.string()),
        pa.field(COL_PREDICTED_LABEL, pa.int32(), nullable=False),
        pa.field(COL_PREDICTED_CLASS, pa.string(), nullable=False),
        pa.field(COL_CONFIDENCE, pa.float32(), nullable=False),
        pa.field(COL_PROBABILITIES, pa.list_(pa.float32()), nullable=False),
        pa.field(COL_LOW_CONFIDENCE, pa.bool_(), nullable=False),
        pa.field(COL_NOT_DIGIT, pa.bool_()),
        pa.field(COL_NOT_DIGIT_SCORE, pa.float32()),
        pa.field(COL_BLANK, pa.bool_(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
        pa.field(COL_RUNTIME_MODEL_ID, pa.string(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_SCORED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""One row per scored image. ``true_label``/``true_class`` are null when no label is known;
``model_id`` is the model's identity, ``runtime_model_id`` the file that scored the row.
``not_digit``: the image is not a digit (``not_digit_score >= `` the threshold, the card's unless
``--not-digit-threshold``); both null for a model without the check (:mod:`mnist_batch.trust`).
``probabilities`` and ``confidence`` are over the C classes either way."""


def prediction_columns(
    paths: Sequence[str | None],
    true_labels: Sequence[int | None],
    blank: Sequence[bool],
    probabilities: np.ndarray,
    *,
    class_names: Sequence[str],
    model_id: str,
    run_id: str,
    review_threshold: float,
    scored_at: datetime.datetime,
    runtime_model_id: str | Sequence[str] | None = None,
    not_digit_threshold: float | None = None,
) -> dict[str, pa.Array]:
    """The :data:`PREDICTIONS_SCHEMA` columns of N scored images: the one builder of prediction rows
    (scoring's ``predictions`` table and ``evaluate``'s ``predictions.parquet`` alike).

    Args:
      paths: N paths (None where an image has no file).
      true_labels: N class indices, None where no label is known.
      blank: N flags: the image had no ink.
      probabilities: float32 [N, C], or [N, C+1] from a model with the not-digit output
        (split by :func:`mnist_batch.trust.split_outputs`).
      class_names: C names.
      model_id: the model's identity (sha256 of its ``.keras`` file), written on every row.
      runtime_model_id: the sha256 of the runtime file that scored, on every row or one per row
        (None: ``model_id``, the ``.keras`` file scored itself).
      run_id: written on every row.
      review_threshold: rows with confidence below it are ``low_confidence``.
      scored_at: timestamp of every row (timezone-aware).
      not_digit_threshold: rows whose not-digit score is at least this are ``not_digit``
        (None, or C outputs: both columns null).
    """
    n, num_classes = len(paths), len(class_names)
    runtime_model_id = model_id if runtime_model_id is None else runtime_model_id
    outputs = np.asarray(probabilities, dtype=np.float32)
    outputs = outputs.reshape(n, outputs.shape[-1] if outputs.ndim == 2 else num_classes)
    probabilities, scores = trust.split_outputs(outputs, num_classes)
    flags = trust.flag(scores, not_digit_threshold)
    predicted = probabilities.argmax(axis=1).astype(np.int32)
    confidence = probabilities[np.arange(n), predicted]
    names = pa.array(list(class_names), pa.string())
    has_label = np.fromiter((t is not None for t in true_labels), dtype=bool, count=n)
    true_index = np.fromiter((-1 if t is None else t for t in true_labels), dtype=np.int32, count=n)
    true_label = pa.array(true_index, pa.int32(), mask=~has_label)
    offsets = np.arange(0, (n + 1) * num_classes, num_classes, dtype=np.int32)
    return {
        COL_PATH: pa.array(list(paths), pa.string()),
        COL_TRUE_LABEL: true_label,
        COL_TRUE_CLASS: names.take(true_label),  # a null label: a null name
        COL_PREDICTED_LABEL: pa.array(predicted, pa.int32()),
        COL_PREDICTED_CLASS: names.take(pa.array(predicted, pa.int32())),
        COL_CONFIDENCE: pa.array(confidence, pa.float32()),
        COL_PROBABILITIES: pa.ListArray.from_arrays(pa.array(offsets), pa.array(probabilities.reshape(-1))),
        COL_LOW_CONFIDENCE: pa.array(confidence < review_threshold, pa.bool_()),
        COL_NOT_DIGIT: pa.nulls(n, pa.bool_()) if flags is None else pa.array(flags, pa.bool_()),
        COL_NOT_DIGIT_SCORE: pa.nulls(n, pa.float32()) if flags is None else pa.array(scores, pa.float32()),
        COL_BLANK: pa.array(np.asarray(blank, dtype=bool).reshape(n), pa.bool_()),
        COL_MODEL_ID: pa.repeat(pa.scalar(model_id, pa.string()), n),
        COL_RUNTIME_MODEL_ID: (
            pa.repeat(pa.scalar(runtime_model_id, pa.string()), n)
            if isinstance(runtime_model_id, str)
            else pa.array(list(runtime_model_id), pa.string())
        ),
        COL_RUN_ID: pa.repeat(pa.scalar(run_id, pa.string()), n),
        # one scalar repeated: N timezone-aware datetimes cost 0.3 us per row to convert
        COL_SCORED_AT: pa.repeat(pa.scalar(scored_at, PREDICTIONS_SCHEMA.field(COL_SCORED_AT).type), n),
    }


ERRORS_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field(COL_STAGE, pa.string(), nullable=False),
        pa.field(COL_ERROR_TYPE, pa.string(), nullable=False),
        pa.field(COL_MESSAGE, pa.string(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
    ]
)
"""One row per matched image file that could not be scored; ``stage`` is one of ERROR_STAGES."""

CONFUSION_SCHEMA = pa.schema(
    [
        pa.field(COL_TRUE_LABEL, pa.int32(), nullable=False),
        pa.field(COL_PREDICTED_LABEL, pa.int32(), nullable=False),
        pa.field(COL_TRUE_CLASS, pa.string(), nullable=False),
        pa.field(COL_PREDICTED_CLASS, pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
    ]
)
"""Every class x class cell, zeros included; only predictions with a true label count."""

PER_CLASS_SCHEMA = pa.schema(
    [
        pa.field("label", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("support", pa.int64(), nullable=False),
        pa.field("precision", pa.float64(), nullable=False),
        pa.field("recall", pa.float64(), nullable=False),
        pa.field("f1", pa.float64(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
    ]
)
"""Per-class statistics from the confusion matrix (zero_division = 0)."""

PREDICTIONS_TABLE = "predictions"
ERRORS_TABLE = "errors"
TABLES = {
    PREDICTIONS_TABLE: PREDICTIONS_SCHEMA,
    ERRORS_TABLE: ERRORS_SCHEMA,
    "confusion": CONFUSION_SCHEMA,
    "per_class": PER_CLASS_SCHEMA,
}
"""Output folder name -> schema."""


EVALUATION_EXTRAS = (
    pa.field("model", pa.string(), nullable=False),
    pa.field("index", pa.int64(), nullable=False),
    pa.field("pixels", pa.binary()),
)
"""What ``evaluate``'s ``predictions.parquet`` adds to a scoring row: the model's display name, the
row's index within the split, and the 784 bytes of the 28x28 image (array inputs; null for files)."""

EVALUATION_PREDICTIONS_SCHEMA = pa.schema(
    [
        EVALUATION_EXTRAS[0],
        EVALUATION_EXTRAS[1],
        *(f.with_nullable(True) if f.name == COL_PATH else f for f in PREDICTIONS_SCHEMA),
        EVALUATION_EXTRAS[2],
    ]
)
"""``evaluate``'s per-image rows: :data:`PREDICTIONS_SCHEMA` (``path`` null for array inputs;
``low_confidence`` at the default review threshold) plus :data:`EVALUATION_EXTRAS`."""

MANIFEST_TABLE = "manifest"
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime", pa.float64(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
        pa.field("version", pa.string()),
    ]
)
"""One row per image file a production run took on (scored or errored); ``sha256`` only with
``--incremental-key hash``; ``version``: what tells the file's content apart beyond size and mtime
(a local file: ``<inode>:<ctime ns>``; an object of an S3 folder: its ETag; null for other remote
patterns, and in runs written before the column existed). Incremental runs read it to skip files scored before."""

ID_COLUMNS = (COL_RUN_ID, COL_MODEL_ID)
"""The join keys every table carries (the runs table too); the same meaning everywhere."""

RUNS_TABLE = "runs"
RUNS_SCHEMA = pa.schema(
    [
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
        pa.field("model_name", pa.string()),
        pa.field("runtime", pa.string()),
        pa.field(COL_RUNTIME_MODEL_ID, pa.string()),
        pa.field("runner", pa.string()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("committed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        *(pa.field(k, pa.int64(), nullable=False) for k in ("matched", "scored", "errors", "skipped")),
        *(pa.field(k, pa.int64()) for k in ("low_confidence", "blank", "labelled")),
        pa.field("accuracy", pa.float64()),
        pa.field("macro_f1", pa.float64()),
        pa.field("exit_code", pa.int32()),
        pa.field(COL_NOT_DIGIT, pa.int64()),
    ]
)
"""``ROOT/runs/dt=D/run=ID/``: one row per committed run, written in its commit (runs layout only).
``dt`` and ``run`` are its Hive partitions as in every table; ``accuracy``/``macro_f1`` null
without labels; ``not_digit`` (rows flagged not a digit) null for a model without the check and in
rows written before it existed. Order runs by ``committed_at`` (run ids are not in commit order)."""


def runs_row(summary: dict) -> dict:
    """The :data:`RUNS_SCHEMA` row of a run from its summary."""
    counts = summary.get("counts") or {}

    def when(text):
        return None if not text else datetime.datetime.fromisoformat(str(text))

    return {
        COL_RUN_ID: summary["run_id"],
        COL_MODEL_ID: summary["model_id"],
        "model_name": summary.get("model_name"),
        "runtime": summary.get("runtime"),
        COL_RUNTIME_MODEL_ID: summary.get(COL_RUNTIME_MODEL_ID),
        "runner": summary.get("runner"),
        "started_at": when(summary.get("started_at")),
        "committed_at": when(summary["committed_at"]),
        **{k: int(counts.get(k) or 0) for k in ("matched", "scored", "errors", "skipped")},
        **{k: counts.get(k) for k in ("low_confidence", "blank", "labelled")},
        "accuracy": summary.get("accuracy"),
        "macro_f1": summary.get("macro_f1"),
        "exit_code": summary.get("exit_code"),
        COL_NOT_DIGIT: counts.get(COL_NOT_DIGIT),
    }


RUN_TABLES = {**TABLES, MANIFEST_TABLE: MANIFEST_SCHEMA, RUNS_TABLE: RUNS_SCHEMA}
"""Tables of a production run (the flat tables, the manifest, and its row of the runs table)."""
PIPELINE_TABLES = (*TABLES, MANIFEST_TABLE)
"""The tables the scoring graph writes (the runs row is written by the commit step)."""

SUMMARY_FILE = "summary.json"
SUCCESS_FILE = "_SUCCESS"
JOURNAL_FILE = "_COMMITTING"
"""A commit in progress: the moves and the summary, so a commit cut short is completed later."""
LAYOUT_FILE = "_mnist_batch_layout.json"
LAYOUT_FORMAT = "mnist_batch.runs"
LAYOUT_VERSION = 2
RUNS_DIR = "_runs"
STAGING_DIR = "_staging"
PROGRESS_DIR = "_progress"
"""In an attempt's staging folder: the workers' progress files (never a table; deleted with the staging)."""
CLAIMS_DIR = "_claims"
QUARANTINE_DIR = "_quarantine"
"""Where ``mnist-batch runs verify --quarantine`` moves a bad run (``_``: skipped by readers)."""
PARTITION_COLUMNS = ("dt", "run")


def partition_parts(dt: str, run_id: str) -> tuple[str, str]:
    """A run's two Hive folder names under a table (or ``_runs``): ``("dt=2026-06-01", "run=nightly")``."""
    return f"{PARTITION_COLUMNS[0]}={dt}", f"{PARTITION_COLUMNS[1]}={run_id}"


def parse_partition(parts: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """``(dt, run_id)`` from a relative path's folder names (``["dt=…", "run=…", …]``), or None."""
    dt, run = (f"{c}=" for c in PARTITION_COLUMNS)
    if len(parts) >= 2 and parts[0].startswith(dt) and parts[1].startswith(run):
        return parts[0][len(dt) :], parts[1][len(run) :]
    return None


"""Hive partition columns of the runs layout: ``dt`` (YYYY-MM-DD) and ``run`` (the run id)."""
PARTITION_SCHEMA = pa.schema([pa.field("dt", pa.date32()), pa.field("run", pa.string())])
"""The partition columns typed: ``dt`` a date, ``run`` a string, in every table and the runs table.
pyarrow and pandas read ``dt=`` as a string unless told
(``pyarrow.dataset.partitioning(PARTITION_SCHEMA, flavor="hive")``, deploy/README.md); DuckDB and
Polars infer a date (their recipes name the types too)."""
LAYOUTS = ("flat", "runs")
"""Output layouts (``score --layout``): tables directly in ``--output``, or a runs root."""
INCREMENTAL_KEYS = ("stat", "hash")
"""What identifies a file an earlier run took on (``--incremental-key``): path + size + mtime + the manifest's
``version`` (a local file's inode and ctime), or path + sha256."""
