"""Statistics computed with Beam combiners (distributed; no step collects all rows in one process).

* :class:`PredictionStatsFn` -- one pass over the predictions tables: counts and the confusion
  matrix (labelled rows only), merged across workers as numpy accumulators.
* :class:`CountByFn` -- counts per element (errors by stage, skipped files by reason).
* :func:`confusion_rows` / :func:`per_class_rows` -- the tables derived from the matrix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mnist_batch import metrics
from mnist_batch.constants import (
    COL_BLANK,
    COL_CONFIDENCE,
    COL_LOW_CONFIDENCE,
    COL_PREDICTED_LABEL,
    COL_STAGE,
    COL_TRUE_LABEL,
)
from mnist_batch.runstore.history import SKIP_ALREADY_SCORED
from mnist_batch.tables import COL_NOT_DIGIT


class PredictionStatsFn(beam.CombineFn):
    """Predictions tables -> ``{"scored", "low_confidence", "blank", "labelled", "confusion": int64 [C, C],
    "predicted": int64 [C] (every scored row), "confidence_histogram": int64 [CONFIDENCE_BINS],
    "confidence_sum", "not_digit": int or None (no row had the check)}`` -- the per-run aggregates
    monitoring reads instead of every row.

    Inputs are the ``pyarrow.Table`` chunks of :class:`~mnist_batch.scoring.format.FormatPredictionsFn`;
    each chunk is added with numpy in one step.
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
        acc[0] += table.num_rows
        acc[1] += int(np.count_nonzero(table.column(COL_LOW_CONFIDENCE).to_numpy()))
        acc[2] += int(np.count_nonzero(table.column(COL_BLANK).to_numpy()))
        labelled = table.filter(pc.is_valid(table.column(COL_TRUE_LABEL)))
        if labelled.num_rows:
            true = labelled.column(COL_TRUE_LABEL).to_numpy()
            predicted = labelled.column(COL_PREDICTED_LABEL).to_numpy()
            np.add.at(acc[3], (true, predicted), 1)
        predicted_all = table.column(COL_PREDICTED_LABEL).to_numpy()
        acc[4] += np.bincount(predicted_all, minlength=self._num_classes)[: self._num_classes]
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


class CountByFn(beam.CombineFn):
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


class ComputeStats(beam.PTransform):
    """Predictions, errors, matched files and skipped files -> confusion rows, per-class rows, stats.

    All counts come from three combiners (predictions; matched files; errors by stage and
    skipped files by reason, one keyed count over the two small collections and, in incremental
    runs, the per-bundle counts of files scored before: ``already_scored``); ``AssembleStats``
    only sees their three results. The combiners run ``without_defaults`` and the side inputs
    carry the empty result instead, which spares each combiner its default-injection stages
    (Beam start-up grows with every stage). The confusion and per-class rows derive from the
    assembled stats, so every class x class cell is written even when nothing was scored.
    """

    def __init__(self, class_names: tuple[str, ...]) -> None:
        super().__init__()
        self._class_names = class_names

    def expand(self, pcolls):
        names = self._class_names
        prediction_fn = PredictionStatsFn(len(names))
        prediction_stats = (
            pcolls["predictions"] | "PredictionStats" >> beam.CombineGlobally(prediction_fn).without_defaults()
        )
        matched = (
            pcolls["images"]
            | "CountMatched" >> beam.CombineGlobally(beam.combiners.CountCombineFn()).without_defaults()
        )
        outcomes = [
            pcolls["errors"] | "KeyErrorsByStage" >> beam.Map(lambda row: (("errors", row[COL_STAGE]), 1)),
            pcolls["skipped"] | "KeySkippedByReason" >> beam.Map(lambda skipped: (("skipped", skipped[1]), 1)),
        ]
        if pcolls.get("already_scored") is not None:  # counts, one per bundle (incremental runs)
            outcomes.append(
                pcolls["already_scored"]
                | "KeyAlreadyScored" >> beam.Map(lambda n: (("skipped", SKIP_ALREADY_SCORED), n))
            )
        outcomes = tuple(outcomes) | "MergeOutcomes" >> beam.Flatten()
        by_outcome = outcomes | "CountOutcomes" >> beam.CombineGlobally(CountByFn()).without_defaults()
        stats = (
            pcolls["images"].pipeline
            | "StatsSeed" >> beam.Create([None])
            | "AssembleStats"
            >> beam.Map(
                lambda _, ps, m, o: summarize(
                    ps,
                    m,
                    {stage: n for (kind, stage), n in o.items() if kind == "errors"},
                    {reason: n for (kind, reason), n in o.items() if kind == "skipped"},
                ),
                beam.pvalue.AsSingleton(
                    prediction_stats, default_value=prediction_fn.extract_output(prediction_fn.create_accumulator())
                ),
                beam.pvalue.AsSingleton(matched, default_value=0),
                beam.pvalue.AsSingleton(by_outcome, default_value={}),
            )
        )
        confusion = stats | "ConfusionRows" >> beam.FlatMap(
            lambda st: confusion_rows(np.asarray(st["confusion_matrix"]), names)
        )
        per_class = stats | "PerClassRows" >> beam.FlatMap(
            lambda st: per_class_rows(np.asarray(st["confusion_matrix"]), names)
        )
        return {"confusion": confusion, "per_class": per_class, "stats": stats}
