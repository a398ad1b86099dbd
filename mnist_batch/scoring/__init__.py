"""Batch scoring with Apache Beam: folders of images -> Parquet predictions, dead letters, statistics.

One job per module (ARCHITECTURE.md has the whole map and one file's path through it):

* inputs: :mod:`~mnist_batch.scoring.read` (``--input`` -> literal or glob patterns),
  :mod:`~mnist_batch.scoring.listing` (local listing that accounts for every entry),
  :mod:`~mnist_batch.scoring.matching` (list, classify, read matches, reshuffle),
  :mod:`~mnist_batch.scoring.incremental` (manifest rows; files scored before skipped, in the job);
* per file: :mod:`~mnist_batch.scoring.decode` (bounded read + decode + preprocess, dead
  letters), :mod:`~mnist_batch.scoring.labels` (true labels), :mod:`~mnist_batch.scoring.handler`
  (RunInference's adapter to :class:`mnist_batch.models.Predictor`),
  :mod:`~mnist_batch.scoring.format` (predictions as pyarrow tables per chunk);
* per run: :mod:`~mnist_batch.scoring.stats` (combiners), :mod:`~mnist_batch.scoring.sinks`
  (shards into staging), :mod:`~mnist_batch.scoring.summary`, :mod:`~mnist_batch.scoring.pipeline`
  (``build_pipeline(p, config)``: the graph, nothing run);
* launching: :mod:`~mnist_batch.scoring.options` (``parse`` -> one ``ScoreSettings``; argparse
  wiring, Beam-option checks), :mod:`~mnist_batch.scoring.preflight`, :mod:`~mnist_batch.scoring.runners`,
  :mod:`~mnist_batch.scoring.launch` (``start``: the one launch sequence, for every layout),
  :mod:`~mnist_batch.scoring.worker_errors`, :mod:`~mnist_batch.scoring.counters`.

This package never imports :mod:`mnist_batch.training`: it reaches a model only through the
exported ``.keras`` file and its model card (:mod:`mnist_batch.models`). The run store it
writes into (layouts, leases, commit, history, shards) is :mod:`mnist_batch.runstore`, which
knows nothing of the Beam graph.
"""
