"""``runs.parquet``: one row per committed run, its figures, its reference and what its checks found."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pyarrow as pa

from mnist_batch.monitoring.checks import CheckResult, status_of
from mnist_batch.monitoring.collect import RunRecord, parse_time
from mnist_batch.monitoring.reference import Reference
from mnist_batch.tables import COL_RUNTIME_MODEL_ID, ERROR_STAGES

MONITOR_RUNS_FILE = "runs.parquet"
MONITOR_PAGE_FILE = "monitor.html"
MONITOR_JSON_FILE = "monitor.json"

MONITOR_RUNS_SCHEMA = pa.schema(
    [
        pa.field("dt", pa.date32(), nullable=False),
        pa.field("run", pa.string(), nullable=False),
        pa.field("model_id", pa.string()),
        pa.field(COL_RUNTIME_MODEL_ID, pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("runtime", pa.string()),
        pa.field("runner", pa.string()),
        pa.field("matched", pa.int64()),
        pa.field("scored", pa.int64()),
        pa.field("errors", pa.int64()),
        *(pa.field(f"errors_{stage}", pa.int64()) for stage in ERROR_STAGES),
        pa.field("errors_by_stage", pa.map_(pa.string(), pa.int64())),
        pa.field("skipped", pa.int64()),
        pa.field("skipped_by_reason", pa.map_(pa.string(), pa.int64())),
        pa.field("low_confidence", pa.int64()),
        pa.field("blank", pa.int64()),
        pa.field("labelled", pa.int64()),
        pa.field("error_rate", pa.float64()),
        pa.field("low_confidence_rate", pa.float64()),
        pa.field("blank_rate", pa.float64()),
        pa.field("not_digit", pa.int64()),
        pa.field("not_digit_rate", pa.float64()),
        pa.field("mean_confidence", pa.float64()),
        pa.field("review_threshold", pa.float64()),
        pa.field("class_names", pa.list_(pa.string())),
        pa.field("predicted_class_counts", pa.list_(pa.int64())),
        pa.field("predicted_class_mix", pa.list_(pa.float64())),
        pa.field("confidence_histogram", pa.list_(pa.int64())),
        pa.field("accuracy", pa.float64()),
        pa.field("macro_f1", pa.float64()),
        pa.field("wall_time_s", pa.float64()),
        pa.field("images_per_s", pa.float64()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("committed_at", pa.timestamp("us", tz="UTC")),
        pa.field("reference", pa.string()),
        pa.field("psi_class_mix", pa.float64()),
        pa.field("psi_confidence", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
    ]
)
"""``DIR/runs.parquet`` of ``mnist-batch monitor``, in commit order: rates are shares (0..1), None where
undefined; ``flags`` holds one ``check: reason`` per alert; ``status`` is ok, warn, alert or unreadable.
Types as in the run store's runs table: ``dt`` a date, ``started_at`` / ``committed_at`` UTC timestamps."""


def _float(v) -> float | None:
    return None if v is None else float(v)


def runs_table(
    records: Sequence[RunRecord], refs: Sequence[Reference], results: Sequence[Sequence[CheckResult]]
) -> pa.Table:
    rows = []
    for record, ref, checks in zip(records, refs, results, strict=True):
        s, counts = record.summary, record.counts
        by_check = {c.check: c for c in checks}
        predicted = record.predicted_class_counts
        total = predicted.sum()
        errors_by_stage = {str(k): int(v) for k, v in (s.get("errors_by_stage") or {}).items()}
        rows.append(
            {
                "dt": datetime.date.fromisoformat(record.dt),
                "run": record.run,
                "model_id": record.model_id or None,
                COL_RUNTIME_MODEL_ID: record.runtime_model_id or None,
                "model_name": record.model_name or None,
                "runtime": record.runtime,
                "runner": s.get("runner"),
                "matched": counts.get("matched"),
                "scored": counts.get("scored"),
                "errors": counts.get("errors"),
                **{f"errors_{stage}": errors_by_stage.get(stage, 0) for stage in ERROR_STAGES},
                "errors_by_stage": list(errors_by_stage.items()),
                "skipped": counts.get("skipped"),
                "skipped_by_reason": [(str(k), int(v)) for k, v in (s.get("skipped_by_reason") or {}).items()],
                "low_confidence": counts.get("low_confidence"),
                "blank": counts.get("blank"),
                "labelled": counts.get("labelled"),
                "error_rate": record.error_rate,
                "low_confidence_rate": record.low_confidence_rate,
                "blank_rate": record.blank_rate,
                "not_digit": (s.get("counts") or {}).get("not_digit"),
                "not_digit_rate": record.not_digit_rate,
                "mean_confidence": _float(s.get("mean_confidence")),
                "review_threshold": _float(s.get("review_threshold")),
                "class_names": record.class_names,
                "predicted_class_counts": predicted.tolist(),
                "predicted_class_mix": (predicted / total).tolist() if total else None,
                "confidence_histogram": record.confidence_histogram.tolist(),
                "accuracy": _float(s.get("accuracy")),
                "macro_f1": _float(s.get("macro_f1")),
                "wall_time_s": _float(s.get("wall_time_s")),
                "images_per_s": _float(s.get("images_per_s")),
                "started_at": (record.row or {}).get("started_at") or parse_time(s.get("started_at")),
                "committed_at": record.committed_at,
                "reference": ref.label,
                "psi_class_mix": by_check["class_mix"].value,
                "psi_confidence": by_check["confidence"].value,
                "status": status_of(checks),
                "flags": [f"{c.check}: {c.reason}" for c in checks if c.status == "alert"],
            }
        )
    return pa.Table.from_pylist(rows, schema=MONITOR_RUNS_SCHEMA)
