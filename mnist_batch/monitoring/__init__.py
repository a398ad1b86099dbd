"""Watching scheduled runs: one table and one page over every committed run of a runs root.

Reads each committed run's row of the runs table (``ROOT/runs/``: identity, commit time, counts)
and its ``summary.json`` (its other aggregates), never prediction rows:

* :mod:`~mnist_batch.monitoring.collect` -- committed runs -> :class:`RunRecord` (one per run, in
  commit order), and where the runs table and the summaries disagree;
* :mod:`~mnist_batch.monitoring.reference` -- what each run is compared with (the model card's
  held-out distribution, ``--reference RUN_ID``, or the model's first run);
* :mod:`~mnist_batch.monitoring.checks` -- PSI of the class mix and of the binned confidence, jumps
  in error / low-confidence / blank rates, accuracy drops, model changes;
* :mod:`~mnist_batch.monitoring.table` -- ``runs.parquet`` (:data:`MONITOR_RUNS_SCHEMA`);
* :mod:`~mnist_batch.monitoring.page` -- ``monitor.html`` (trend plots over commit time as data URIs,
  flagged runs);
* :mod:`~mnist_batch.monitoring.monitor` -- :func:`monitor`, what ``mnist-batch monitor`` runs.

Imports the base modules, the read-only run-store modules of scoring (``runs``/``fs``/``history``)
and the report's ``png_data_uri``; never training. Nothing is imported here, so the command line
reads :class:`~mnist_batch.monitoring.checks.Thresholds` without loading Beam or matplotlib.
"""
