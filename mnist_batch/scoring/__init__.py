"""Batch scoring with Apache Beam: folders of images -> Parquet predictions, dead letters, statistics.

One job per module:

* :mod:`~mnist_batch.scoring.read` -- expand ``--input`` into match patterns, check each matches,
  ``MatchAll`` -> classify (image / skipped) -> ``ReadMatches`` -> ``Reshuffle``.
* :mod:`~mnist_batch.scoring.dofns` -- the DoFns: classify matches, read + decode + preprocess
  with per-element dead letters, predictions as pyarrow tables built per chunk, inference
  failures to error rows.
* :mod:`~mnist_batch.scoring.model_handler` -- a small Keras 3 ``ModelHandler`` (no
  ``tensorflow_hub``) and the model-vs-card check that runs before any file is read.
* :mod:`~mnist_batch.scoring.stats` -- confusion matrix and counts with Beam combiners (per chunk).
* :mod:`~mnist_batch.scoring.sinks` -- the pyarrow schemas (declared once) and Parquet writers.
* :mod:`~mnist_batch.scoring.pipeline` -- ``build_pipeline(p, config)`` wires them; ``run_scoring``
  runs it and writes ``summary.json``.

This package never imports :mod:`mnist_batch.training`: it reaches a model only through the
exported ``.keras`` file and its model card.
"""
