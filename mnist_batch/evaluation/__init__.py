"""Offline evaluation: one or more exported models on a labelled data set split, side by side.

* :mod:`~mnist_batch.evaluation.infer` -- probabilities for a split: arrays in-process through
  tf.data (the training side's :func:`~mnist_batch.training.pipeline.normalize_tf`, i.e. the shared
  ``PIXEL_LUT``), image folders through the scoring pipeline itself (``run_scoring`` into a
  temporary folder, predictions read back), so folder inputs see exactly what scoring does.
* :mod:`~mnist_batch.evaluation.summarize` -- the metrics of one model and McNemar's test of each
  model against the first, as table rows.
* :mod:`~mnist_batch.evaluation.run` -- ``evaluate(...)``: the above for every model, written as
  ``metrics.parquet``, ``per_class.parquet``, ``confusion.parquet``, ``predictions.parquet``,
  ``comparison.md`` and ``evaluation.json`` under the output folder.

This package sits above both training and scoring and may import either; neither imports it.
"""

from __future__ import annotations

from mnist_batch.evaluation.run import EvaluationError, evaluate

__all__ = ["EvaluationError", "evaluate"]
