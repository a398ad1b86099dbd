"""Statistics computed with Beam combiners (distributed; no step collects all rows in one process).

* :class:`PredictionStatsFn` -- one pass over the predictions tables: counts and the confusion
  matrix (labelled rows only), merged across workers as numpy accumulators.
* :class:`CountByFn` -- counts per element (errors by stage, skipped files by reason).
* :func:`confusion_rows` / :func:`per_class_rows` -- the tables derived from the matrix.

The combiners' methods and the derived rows are Beam-free, in :mod:`mnist_batch.scoring.aggregate`
(the in-process engine counts with them too); this module wires them into the graph.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from mnist_batch.constants import COL_STAGE
from mnist_batch.runstore.history import SKIP_ALREADY_SCORED
from mnist_batch.scoring.aggregate import (
    CountBy,
    PredictionStats,
    assemble_stats,
    confusion_rows,
    per_class_rows,
)


class PredictionStatsFn(PredictionStats, beam.CombineFn):
    """:class:`~mnist_batch.scoring.aggregate.PredictionStats` as a Beam combiner."""


class CountByFn(CountBy, beam.CombineFn):
    """:class:`~mnist_batch.scoring.aggregate.CountBy` as a Beam combiner."""


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
                lambda _, ps, m, o: assemble_stats(ps, m, o),
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
