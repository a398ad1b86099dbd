"""Rows and counts of a scoring run, Beam-free: what the Beam steps and the in-process job both build with.

* :class:`ImageKey`, :class:`ImageGroup` -- a decoded file's key, a group of decoded files;
* :func:`failure_row` / :func:`error_row` -- dead letters (:data:`~mnist_batch.tables.ERRORS_SCHEMA` rows);
* :func:`predictions_table` -- predictions of N images as one table chunk;
* :class:`PredictionStats`, :class:`CountBy` -- the combiners' methods (predictions -> counts and the
  confusion matrix; ``(key, n)`` -> counts), which the Beam combiners inherit;
* :func:`summarize` (:func:`assemble_stats`), :func:`confusion_rows`, :func:`per_class_rows`, :func:`stamped` -- the run's
  statistics and the tables derived from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mnist_batch import metrics
from mnist_batch.constants import (
    COL_BLANK,
    COL_CONFIDENCE,
    COL_ERROR_TYPE,
    COL_LOW_CONFIDENCE,
    COL_MESSAGE,
    COL_MODEL_ID,
    COL_PATH,
    COL_PREDICTED_LABEL,
    COL_RUN_ID,
    COL_STAGE,
    COL_TRUE_LABEL,
)
from mnist_batch.tables import COL_NOT_DIGIT, PREDICTIONS_SCHEMA, prediction_columns

MAX_MESSAGE_CHARS = 500


class ImageKey(NamedTuple):
    """RunInference key of one image: where it came from and what is known about it."""

    path: str
    true_label: int | None
    blank: bool


class ImageGroup(NamedTuple):
    """A group of decoded files, travelling as one element: N keys and uint8 [N, 28, 28] pixels."""

    keys: tuple[ImageKey, ...]
    pixels: np.ndarray


def error_row(path: str, stage: str, exc: BaseException, run_id: str) -> dict[str, Any]:
    """An :data:`~mnist_batch.tables.ERRORS_SCHEMA` row for ``exc`` at ``stage``."""
    return failure_row(path, stage, type(exc).__name__, str(exc) or repr(exc), run_id)


def failure_row(path: str, stage: str, error_type: str, message: str, run_id: str) -> dict[str, Any]:
    """An :data:`~mnist_batch.tables.ERRORS_SCHEMA` row (the message cut to ``MAX_MESSAGE_CHARS``)."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {
        COL_PATH: path,
        COL_STAGE: stage,
        COL_ERROR_TYPE: error_type,
        COL_MESSAGE: message,
        COL_RUN_ID: run_id,
    }


def predictions_table(keys: Sequence[ImageKey], probabilities: np.ndarray, **fields: Any) -> pa.Table:
    """Predictions rows of N images (``keys``, float32 [N, C] ``probabilities``) as one
    :data:`~mnist_batch.tables.PREDICTIONS_SCHEMA` table, in the order of ``keys``.

    ``fields`` are :func:`~mnist_batch.tables.prediction_columns`' keyword arguments
    (``class_names``, ``model_id``, ``run_id``, ``review_threshold``, ``scored_at``, ``runtime_model_id``,
    ``not_digit_threshold``).
    """
    return predictions_chunk(
        [k.path for k in keys], [k.true_label for k in keys], [k.blank for k in keys], probabilities, **fields
    )


def predictions_chunk(
    paths: Sequence[str], true_labels: Sequence[int | None], blank: Sequence[bool] | np.ndarray, probabilities, **fields
) -> pa.Table:
    """:func:`predictions_table` of N images given column by column (N paths, N labels or None,
    bool [N] blank, float32 [N, C] probabilities): the in-process job's rows, no key object per image."""
    columns = prediction_columns(paths, true_labels, blank, probabilities, **fields)
    return pa.Table.from_arrays([columns[name] for name in PREDICTIONS_SCHEMA.names], schema=PREDICTIONS_SCHEMA)


class PredictionStats:
    """Predictions tables -> ``{"scored", "low_confidence", "blank", "labelled", "confusion": int64 [C, C],
    "predicted": int64 [C] (every scored row), "confidence_histogram": int64 [CONFIDENCE_BINS],
    "confidence_sum", "not_digit": int or None (no row had the check)}`` -- the per-run aggregates
    monitoring reads instead of every row.

    Inputs are the ``pyarrow.Table`` chunks of :class:`~mnist_batch.scoring.format.FormatPredictionsFn`;
    each chunk is added with numpy in one step. A combiner's four methods, Beam-free: the Beam job
    combines with :class:`~mnist_batch.scoring.stats.PredictionStatsFn` (this and ``beam.CombineFn``),
    the in-process job calls them itself.
    """

    def __init__(self, num_classes: int) -> None:
        self._num_classes = num_classes

    def create_accumulator(self) -> list[Any]:
        c = self._num_classes
        return [
            0,
            0,
            0,
            np.zeros((c, c), np.int64),
            np.zeros(c, np.int64),
            np.zeros(metrics.CONFIDENCE_BINS, np.int64),
            0.0,
            0,
            0,
        ]

    def add_input(self, acc: list[Any], table: pa.Table) -> list[Any]:
        c = self._num_classes
        acc[0] += table.num_rows
        acc[1] += int(np.count_nonzero(table.column(COL_LOW_CONFIDENCE).to_numpy()))
        acc[2] += int(np.count_nonzero(table.column(COL_BLANK).to_numpy()))
        predicted_all = table.column(COL_PREDICTED_LABEL).to_numpy()
        true_column = table.column(COL_TRUE_LABEL)
        if true_column.null_count < table.num_rows:  # some rows labelled: their (true, predicted) cells
            if true_column.null_count:
                valid = pc.is_valid(true_column).to_numpy(zero_copy_only=False)
                true, predicted = true_column.filter(valid).to_numpy(), predicted_all[valid]
            else:
                true, predicted = true_column.to_numpy(), predicted_all
            acc[3] += np.bincount(true.astype(np.int64) * c + predicted, minlength=c * c)[: c * c].reshape(c, c)
        acc[4] += np.bincount(predicted_all, minlength=c)[:c]
        confidence = table.column(COL_CONFIDENCE).to_numpy()
        acc[5] += metrics.confidence_histogram(confidence)
        acc[6] += float(confidence.sum(dtype=np.float64))
        if COL_NOT_DIGIT in table.column_names:
            flags = table.column(COL_NOT_DIGIT)
            acc[7] += int(pc.sum(flags).as_py() or 0)
            acc[8] += len(flags) - flags.null_count
        return acc

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged[0] += acc[0]
            merged[1] += acc[1]
            merged[2] += acc[2]
            merged[3] += acc[3]
            merged[4] += acc[4]
            merged[5] += acc[5]
            merged[6] += acc[6]
            merged[7] += acc[7]
            merged[8] += acc[8]
        return merged

    def extract_output(self, acc: list[Any]) -> dict[str, Any]:
        return {
            "scored": int(acc[0]),
            "low_confidence": int(acc[1]),
            "blank": int(acc[2]),
            "labelled": int(acc[3].sum()),
            "confusion": acc[3],
            "predicted": acc[4],
            "confidence_histogram": acc[5],
            "confidence_sum": float(acc[6]),
            "not_digit": int(acc[7]) if acc[8] else None,
        }


class CountBy:
    """``(hashable key, count)`` elements -> ``{key: sum of its counts}``."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, acc: Counter, element: tuple[Any, int]) -> Counter:
        key, n = element
        acc[key] += n
        return acc

    def merge_accumulators(self, accumulators: Iterable[Counter]) -> Counter:
        merged = Counter()
        for acc in accumulators:
            merged.update(acc)
        return merged

    def extract_output(self, acc: Counter) -> dict[str, int]:
        return dict(sorted(acc.items()))


def confusion_rows(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Every (true, predicted) cell of ``cm``, zeros included, as CONFUSION_SCHEMA rows."""
    return metrics.confusion_table(cm, class_names)


def per_class_rows(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Support, precision, recall, F1 per class as PER_CLASS_SCHEMA rows."""
    return metrics.per_class_table(metrics.per_class(cm), class_names)


def summarize(
    prediction_stats: dict[str, Any],
    matched: int,
    errors_by_stage: dict[str, int],
    skipped_by_reason: dict[str, int],
) -> dict[str, Any]:
    """The run's counts and metrics as one JSON-ready dict (the core of ``summary.json``)."""
    cm = np.asarray(prediction_stats["confusion"])
    labelled = int(cm.sum())
    errors = int(sum(errors_by_stage.values()))
    return {
        "counts": {
            "matched": int(matched),
            "scored": int(prediction_stats["scored"]),
            "errors": errors,
            "skipped": int(sum(skipped_by_reason.values())),
            "low_confidence": int(prediction_stats["low_confidence"]),
            "blank": int(prediction_stats["blank"]),
            "labelled": labelled,
            "not_digit": prediction_stats.get("not_digit"),
        },
        "errors_by_stage": dict(errors_by_stage),
        "skipped_by_reason": dict(skipped_by_reason),
        "accuracy": metrics.accuracy(cm) if labelled else None,
        "macro_f1": metrics.macro_f1(cm) if labelled else None,
        "confusion_matrix": cm.astype(int).tolist(),
        "predicted_class_counts": np.asarray(prediction_stats["predicted"]).astype(int).tolist(),
        "confidence_histogram": np.asarray(prediction_stats["confidence_histogram"]).astype(int).tolist(),
        "mean_confidence": (
            float(prediction_stats["confidence_sum"]) / int(prediction_stats["scored"])
            if prediction_stats["scored"]
            else None
        ),
    }


def stamped(row: dict[str, Any], run_id: str, model_id: str) -> dict[str, Any]:
    """``row`` with the join keys of every table (``run_id``, ``model_id``)."""
    return {**row, COL_RUN_ID: run_id, COL_MODEL_ID: model_id}


def assemble_stats(
    prediction_stats: dict[str, Any], matched: int, outcomes: dict[tuple[str, str], int]
) -> dict[str, Any]:
    """:func:`summarize` of the three combiners' results: :class:`PredictionStats`' output, the number of
    matched files, and :class:`CountBy`'s ``{("errors", stage) | ("skipped", reason): n}``."""
    return summarize(
        prediction_stats,
        matched,
        {stage: n for (kind, stage), n in outcomes.items() if kind == "errors"},
        {reason: n for (kind, reason), n in outcomes.items() if kind == "skipped"},
    )
