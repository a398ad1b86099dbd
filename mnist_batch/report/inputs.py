"""Reads a scoring or an evaluation output folder into :class:`ReportData` (one per model).

Scoring folders (``summary.json`` + ``predictions/``, ``errors/``, ``confusion/``, ``per_class/``
Parquet data sets) give one :class:`ReportData`; evaluation folders (``evaluation.json`` +
``predictions.parquet`` ...) give one per model. Only files are read, so outputs copied from any
runner work.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from mnist_batch import metrics
from mnist_batch.constants import COL_CONFIDENCE, COL_PATH, COL_PREDICTED_LABEL, COL_TRUE_LABEL, IMAGE_SHAPE
from mnist_batch.errors import MnistBatchError
from mnist_batch.tables import COL_NOT_DIGIT, LAYOUT_FILE, RUNS_DIR


class ReportError(MnistBatchError, ValueError):
    """The folder is not a scoring, evaluation or training run output."""


@dataclasses.dataclass
class ReportData:
    """Everything the report shows about one model's predictions.

    Attributes:
      name: model name shown in headings and file names.
      class_names: C names.
      labels: int [N] true class ids, -1 where unknown (unlabelled scoring inputs).
      predicted: int [N]; confidence: float [N] top-class probability.
      paths: [N] original file per row (None for array inputs).
      pixels: [N] 784 bytes of the 28x28 image per row (None where only a path is known).
      confusion: int [C, C] from the folder's confusion table.
      per_class: ``support, precision, recall, f1`` arrays [C] from the folder's per-class table.
      headline: (label, value) rows for the summary table.
      errors: dead-letter rows (path, stage, error_type, message), scoring only.
      not_digit: bool [N] rows flagged not a digit, or None (a model without the check).
      review_threshold: the run's review threshold (marked on the risk-coverage curve), or None.
    """

    name: str
    class_names: tuple[str, ...]
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    paths: list[str | None]
    pixels: list[bytes | None]
    confusion: np.ndarray
    per_class: dict[str, np.ndarray]
    headline: list[tuple[str, Any]]
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    not_digit: np.ndarray | None = None
    review_threshold: float | None = None

    @property
    def labelled(self) -> np.ndarray:
        """bool [N]: rows with a known true label."""
        return self.labels >= 0


def _read_parquet(path: pathlib.Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    if not path.exists():
        return {}
    if path.is_dir() and not any(path.glob("*.parquet")):
        return {}
    return pq.read_table(path).to_pydict()


def _confusion(rows: dict[str, list], num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    for t, p, c in zip(rows.get("true_label", []), rows.get("predicted_label", []), rows.get("count", []), strict=True):
        cm[t, p] += c
    return cm


def _per_class(rows: dict[str, list], num_classes: int) -> dict[str, np.ndarray]:
    out = {k: np.zeros(num_classes) for k in ("support", "precision", "recall", "f1")}
    for i, label in enumerate(rows.get("label", [])):
        for k in out:
            out[k][label] = rows[k][i]
    out["support"] = out["support"].astype(np.int64)
    return out


def read_prediction_columns(pred: dict[str, list], rows: list[int] | None = None) -> dict[str, Any]:
    """The report's view of prediction rows, read the same way from scoring and evaluation outputs.

    Both write :data:`~mnist_batch.tables.PREDICTIONS_SCHEMA` columns (evaluation adds ``model``,
    ``index``, ``pixels``: :data:`~mnist_batch.tables.EVALUATION_EXTRAS`).

    Returns:
      ``labels`` (-1 where unknown), ``predicted``, ``confidence``, ``paths``, ``pixels`` (None where
      absent), ``not_digit`` (bool [N]; None when no row has the check).
    """
    n = len(pred.get(COL_PREDICTED_LABEL, []))
    rows = list(range(n)) if rows is None else rows
    pick = lambda column, default=None: [pred[column][i] for i in rows] if column in pred else [default] * len(rows)  # noqa: E731
    return {
        "labels": np.asarray([-1 if t is None else t for t in pick(COL_TRUE_LABEL)], np.int64),
        "predicted": np.asarray(pick(COL_PREDICTED_LABEL), np.int64),
        "confidence": np.asarray(pick(COL_CONFIDENCE), np.float64),
        "paths": pick(COL_PATH),
        "pixels": pick("pixels"),
        "not_digit": _flags(pick(COL_NOT_DIGIT)),
    }


def _flags(values: list) -> np.ndarray | None:
    """bool [N] from nullable flags; None when every one is null (a model without the check)."""
    if not values or all(v is None for v in values):
        return None
    return np.asarray([bool(v) for v in values], bool)


def not_digit_label(summary: dict[str, Any]) -> tuple[str, Any]:
    """The report's not-digit row: the count at the run's threshold, or that the model has no check."""
    threshold = summary.get("not_digit_threshold")
    if threshold is None:
        return ("not a digit", "no check (the model card has no not-digit threshold)")
    return (f"not a digit (not_digit_score >= {threshold:g})", (summary.get("counts") or {}).get("not_digit", 0))


def low_confidence_label(threshold: float | None) -> str:
    """``"low confidence (< 0.9, flagged for review)"``, or without the number when unknown."""
    shown = f"< {threshold:g}" if threshold is not None else "< review threshold"
    return f"low confidence ({shown}, flagged for review)"


def table_dir(out_dir: pathlib.Path, summary: dict[str, Any], table: str) -> pathlib.Path:
    """Where a scoring run's ``table`` is: ``OUT/<table>`` (flat), or for a run of a run store
    (``out_dir`` = ``ROOT/_runs/dt=D/run=ID``) ``ROOT/<table>/dt=D/run=ID``."""
    if summary.get("layout") == "runs" and out_dir.parent.parent.name == RUNS_DIR:
        return out_dir.parent.parent.parent / table / out_dir.parent.name / out_dir.name
    return out_dir / table


def read_scoring(out_dir: pathlib.Path, summary: dict[str, Any]) -> list[ReportData]:
    """One :class:`ReportData` from a scoring run folder (flat), or a run's folder in a run store."""
    class_names = tuple(summary["class_names"])
    c = len(class_names)
    columns = read_prediction_columns(_read_parquet(table_dir(out_dir, summary, "predictions")))
    errors = _read_parquet(table_dir(out_dir, summary, "errors"))
    counts = summary.get("counts", {})
    headline = [
        ("model", f"{summary.get('model_name', '')} ({summary.get('model', '')})"),
        ("model_id", summary.get("model_id", "")),
        *(
            (("runtime", f"{summary['runtime']} ({summary.get('runtime_reason', '')})"),)
            if summary.get("runtime")
            else ()
        ),
        *(
            (("runtime file", f"{summary['runtime_model']} (sha256 {str(summary.get('runtime_model_id', ''))[:12]})"),)
            if summary.get("runtime_model")
            else ()
        ),
        ("run_id", summary.get("run_id", "")),
        *((("dt", summary["dt"]),) if summary.get("dt") else ()),
        *((("started at (UTC)", summary["started_at"]),) if summary.get("started_at") else ()),
        *((("committed at (UTC)", summary["committed_at"]),) if summary.get("committed_at") else ()),
        ("inputs", ", ".join(summary.get("inputs", []))),
        ("files matched", counts.get("matched", 0)),
        ("scored", counts.get("scored", 0)),
        ("errors", counts.get("errors", 0)),
        ("skipped", counts.get("skipped", 0)),
        *((f"skipped: {reason}", n) for reason, n in sorted(summary.get("skipped_by_reason", {}).items())),
        ("labelled", counts.get("labelled", 0)),
        (low_confidence_label(summary.get("review_threshold")), counts.get("low_confidence", 0)),
        ("blank", counts.get("blank", 0)),
        *((not_digit_label(summary),) if "not_digit_threshold" in summary else ()),
    ]
    if summary.get("accuracy") is not None:
        headline += [("accuracy", float(summary["accuracy"])), ("macro-F1", float(summary["macro_f1"]))]
    headline += [("wall time (s)", summary.get("wall_time_s")), ("images/s", summary.get("images_per_s"))]
    return [
        ReportData(
            name=str(summary.get("model_name") or "model"),
            class_names=class_names,
            **columns,
            confusion=_confusion(_read_parquet(table_dir(out_dir, summary, "confusion")), c),
            per_class=_per_class(_read_parquet(table_dir(out_dir, summary, "per_class")), c),
            headline=headline,
            errors=[dict(zip(errors, row, strict=True)) for row in zip(*errors.values(), strict=True)],
            review_threshold=summary.get("review_threshold"),
        )
    ]


def read_evaluation(out_dir: pathlib.Path, summary: dict[str, Any]) -> list[ReportData]:
    """One :class:`ReportData` per model of an evaluation folder."""
    class_names = tuple(summary["class_names"])
    c = len(class_names)
    pred = _read_parquet(out_dir / "predictions.parquet")
    cells = _read_parquet(out_dir / "confusion.parquet")
    classes = _read_parquet(out_dir / "per_class.parquet")
    found = []
    for m in summary["models"]:
        name = m["model"]
        rows = [i for i, v in enumerate(pred.get("model", [])) if v == name]  # EVALUATION_EXTRAS
        keep_cells = [i for i, v in enumerate(cells.get("model", [])) if v == name]
        keep_classes = [i for i, v in enumerate(classes.get("model", [])) if v == name]
        mine = {k: [v[i] for i in keep_cells] for k, v in cells.items()}
        per = {k: [v[i] for i in keep_classes] for k, v in classes.items()}
        headline = [
            ("model", f"{m['model_name']} ({m['model_path']})"),
            ("model_id", m["model_id"]),
            *(
                (("runtime", f"{m['runtime']} (file sha256 {str(m.get('runtime_model_id', ''))[:12]})"),)
                if m.get("runtime")
                else ()
            ),
            ("data", f"{m['dataset']} [{m['split']}], {m['examples']:,} images"),
            ("accuracy", m["accuracy"]),
            ("macro-F1", m["macro_f1"]),
            ("top-2 accuracy", m["top2_accuracy"]),
            ("log-loss", m["log_loss"]),
            ("ECE (15 bins)", m["ece"]),
            ("error rate among the most confident 98 %", m["error_rate_at_coverage"]),
            ("confidence threshold for 98 % coverage", m["coverage_threshold"]),
            ("images/s", float(m["images_per_s"])),
        ]
        if m.get("not_digit_threshold") is not None:
            headline += [
                (f"not a digit (not_digit_score >= {m['not_digit_threshold']:g})", m["not_digit_rate"]),
                (f"flagged (confidence < {m.get('review_threshold', 0.9):g} or not a digit)", m["flagged_rate"]),
                ("wrong and unflagged", m["wrong_unflagged_rate"]),
            ]
        if m.get("mcnemar_p") is not None:
            headline.append(("McNemar exact p vs the first model", m["mcnemar_p"]))
        found.append(
            ReportData(
                name=name,
                class_names=class_names,
                **read_prediction_columns(pred, rows),
                confusion=_confusion(mine, c),
                per_class=_per_class(per, c),
                headline=headline,
                review_threshold=m.get("review_threshold"),
            )
        )
    return found


def read_output(out_dir: str | pathlib.Path) -> tuple[str, dict[str, Any], list[ReportData]]:
    """``(kind, summary, data)`` of a scoring (``"scoring"``) or evaluation (``"evaluation"``) folder.

    Raises:
      ReportError: neither ``summary.json`` nor ``evaluation.json`` in the folder.
    """
    out_dir = pathlib.Path(out_dir)
    if not out_dir.is_dir():
        raise ReportError(f"{out_dir}: no such directory")
    if (out_dir / "evaluation.json").is_file():
        summary = json.loads((out_dir / "evaluation.json").read_text(encoding="utf-8"))
        return "evaluation", summary, read_evaluation(out_dir, summary)
    if (out_dir / "summary.json").is_file():
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
        return "scoring", summary, read_scoring(out_dir, summary)
    if (out_dir / LAYOUT_FILE).is_file():
        runs = sorted((out_dir / RUNS_DIR).glob("dt=*/run=*/_SUCCESS"))
        latest = f" (latest: {runs[-1].parent})" if runs else ""
        raise ReportError(
            f"{out_dir}: a run store; report one run with `mnist-batch report {out_dir}/{RUNS_DIR}/dt=DATE/run=ID`"
            f"{latest}, or every run with `mnist-batch monitor {out_dir} --output DIR`"
        )
    raise ReportError(
        f"{out_dir}: not a scoring or evaluation output (no summary.json or evaluation.json); "
        "for a training run dir (history.csv) use `mnist-batch report RUN_DIR`"
    )


def row_image(data: ReportData, i: int) -> np.ndarray | None:
    """The image of row ``i``: the original file when readable, else the stored 28x28 pixels."""
    from PIL import Image, UnidentifiedImageError

    path = data.paths[i]
    if path:
        try:
            with Image.open(path) as img:
                img.thumbnail((160, 160))
                return np.asarray(img.convert("L"))
        except (OSError, UnidentifiedImageError, ValueError):
            pass
    if data.pixels[i] is not None:
        return np.frombuffer(data.pixels[i], np.uint8).reshape(IMAGE_SHAPE)
    return None


def check_consistent(data: ReportData) -> None:
    """The per-row predictions must reproduce the folder's confusion matrix (catches mixed runs)."""
    labelled = data.labelled
    cm = metrics.confusion_matrix(data.labels[labelled], data.predicted[labelled], len(data.class_names))
    if data.confusion.sum() and not np.array_equal(cm, data.confusion):
        raise ReportError(f"{data.name}: predictions do not match the confusion table (files from different runs?)")
