"""One launcher for every output layout: check, claim, build, write to staging, commit in the job.

:func:`start` is the launch sequence of every front door (``mnist-batch score``,
``pipelines/score.py``, the Dataflow flex launcher): the environment checked, then
:func:`launch`, which runs a scoring job end to end:

1. check the run id, the model against its card (and ``expect_model_id``), the output place
   (a flat folder, or a runs root with its layout file);
2. claim the run id (and, for ``--incremental``, the root's history) with a lease, so a second
   launch of a live run is refused (:mod:`mnist_batch.runstore.claims`);
3. finish commits cut short and delete the staging of dead launches (:func:`commit.recover`);
4. build the pipeline (:func:`~mnist_batch.scoring.pipeline.build_pipeline`), write every
   table's shards into this attempt's staging folder, and add :class:`CommitRunFn`, which
   writes the summary and commits the run *inside the job* once every shard is final;
5. run it; with ``wait`` return the committed summary, else return once submitted.

A run that fails anywhere commits nothing: its staging folder is deleted (or by the next
launch, if the launcher itself died), and the error is one line.
"""

from __future__ import annotations

import contextlib
from typing import Any

import apache_beam as beam

from mnist_batch.config import ScoreConfig
from mnist_batch.model_card import ModelCard
from mnist_batch.runstore import fs, storage
from mnist_batch.runstore.beam_s3 import bound_beam_client
from mnist_batch.runstore.commit import read_marker
from mnist_batch.runstore.errors import before_commit, storage_step
from mnist_batch.scoring.attempt import (  # noqa: F401 -- Attempt, choose_runtime, ...: the launch's names, here too
    Attempt,
    LaunchRecord,
    RunFailedError,
    canonical,
    check_model,
    choose_runtime,
    earlier_runs,
    launch_record,
    refuse_committed_run_id,
)
from mnist_batch.scoring.attempt import launch_settings as attempt_launch
from mnist_batch.scoring.commit_step import CommitRunFn
from mnist_batch.scoring.counters import metric_counters
from mnist_batch.scoring.incremental import SelectFiles
from mnist_batch.scoring.options import RunOptions, ScoreSettings
from mnist_batch.scoring.pipeline import build_pipeline
from mnist_batch.scoring.preflight import check_environment
from mnist_batch.scoring.progress import StagedProgress, progress_dir
from mnist_batch.scoring.runners import LOCAL_RUNNERS
from mnist_batch.scoring.sinks import WriteTable
from mnist_batch.scoring.summary import failure_line
from mnist_batch.scoring.teardown import abandon
from mnist_batch.tables import PIPELINE_TABLES


def start(settings: ScoreSettings, *, wait: bool = True, card: ModelCard | None = None) -> dict[str, Any]:
    """The launch sequence of every front door: the stores configured, the output and runner checked,
    then :func:`launch_settings`.

    Raises:
      ScoringError: an unwritable output or unknown runner (before any file is read), and
        whatever :func:`launch_settings` raises.
    """
    fs.configure(settings.pipeline_options)  # the --s3_* options, once, for the checks and the launch
    bound_beam_client()  # Beam's own S3 client, bounded as this package's (runstore/beam_s3.py)
    config = settings.config
    places = [("--model", config.model), *(("--input", i) for i in config.inputs)]
    check_environment(
        config.output,
        settings.runner,
        places,
        workers_elsewhere=not settings.workers_see_this_disk,
        labels_csv=config.labels_csv,
    )
    return launch_settings(settings, card=card, wait=wait)


def run_scoring(
    config: ScoreConfig, beam_args: list[str] | None = None, *, card: ModelCard | None = None
) -> dict[str, Any]:
    """A flat run (``OUT/<table>/``, ``OUT/summary.json``) with its summary returned."""
    return launch(config, None, beam_args, card=card)


def launch(
    config: ScoreConfig,
    options: RunOptions | None = None,
    beam_args: list[str] | None = None,
    *,
    card: ModelCard | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """:func:`launch_settings` of ``ScoreSettings.of(config, options, beam_args)``, from code (no
    environment checks: :func:`start` makes them)."""
    settings = ScoreSettings.of(config, options, beam_args or ())
    fs.configure(settings.pipeline_options)  # the run store and the model are read with the job's --s3_* options
    bound_beam_client()
    return launch_settings(settings, card=card, wait=wait)


def launch_settings(settings: ScoreSettings, *, card: ModelCard | None = None, wait: bool = True) -> dict[str, Any]:
    """:func:`mnist_batch.scoring.attempt.launch_settings` with the Beam job (:func:`run_attempt`) as its
    engine: checks, claims, recovery, then the job built and run; returns the committed summary."""
    return attempt_launch(settings, run_attempt, card=card, wait=wait)


def build_job(run: Attempt, record: LaunchRecord, earlier: list[tuple[str, str]]) -> beam.Pipeline:
    """The job: the scoring graph, every table's shards into staging, then :class:`CommitRunFn`."""
    config, layout = run.config, run.layout
    select = None
    if layout.kind == "runs":
        select = SelectFiles(layout.root, layout.run_id, run.options.incremental_key, earlier, config.max_file_bytes)
    p = beam.Pipeline(options=run.beam_options)
    staging = layout.staging_dir(run.attempt)
    outputs = build_pipeline(
        p,
        config,
        card=run.card,
        scorer=run.scorer,
        select_files=select,
        progress_dir=progress_dir(staging) if progress_from_workers(run) else None,
    )
    tables = [t for t in layout.tables if t in PIPELINE_TABLES]  # the runs row is written at commit
    shards = [getattr(outputs, t) | f"Write{t.title().replace('_', '')}" >> WriteTable(staging, t) for t in tables]
    commit_fn = CommitRunFn(
        layout,
        run.attempt,
        tables,
        record,
        max_error_rate=config.max_error_rate,
        replace=run.replace,
        detached_leases=[lease.uri for lease in run.leases] if not run.wait else [],
        held_leases=[lease.uri for lease in run.leases] if run.wait else [],
        fences=[lease.fence for lease in run.leases],
        storage_settings=storage.settings_of(run.beam_options),
    )
    outputs.stats | "CommitRun" >> beam.ParDo(commit_fn, *[beam.pvalue.AsList(s) for s in shards])
    return p


def run_attempt(run: Attempt) -> dict[str, Any]:
    """Builds and runs the job; the committed summary (or, not waiting, the submitted record)."""
    with storage_step(f"read the committed runs under {run.layout.root}"):
        refuse_committed_run_id(run)
        earlier = earlier_runs(run)
    record = launch_record(run, earlier)
    p = build_job(run, record, earlier)
    run_id, layout, attempt = run.layout.run_id, run.layout, run.attempt
    try:
        result = p.run()
        if not run.wait:
            return {**record.as_dict(), "state": "submitted", "attempt": attempt, "exit_code": 0, "failure": None}
        with launcher_progress(run):
            result.wait_until_finish()
    except Exception as exc:
        outcome = abandon(layout, attempt, before_commit=before_commit(exc))
        raise RunFailedError(f"run {run_id} failed{outcome}: {failure_line(exc)}") from exc
    summary = read_marker(layout.marker)
    if not summary or summary.get("attempt") != attempt:
        raise RunFailedError(
            f"run {run_id}: the job finished but did not commit{abandon(layout, attempt)} ({layout.marker})"
        )
    return {**summary, "metrics": metric_counters(result)}


def progress_from_workers(run: Attempt) -> bool:
    """Whether the launcher prints the progress line from what the workers leave in staging: a job on
    a cluster that the launcher waits for (local workers print their own line)."""
    return run.wait and run.runner not in LOCAL_RUNNERS


def launcher_progress(run: Attempt) -> contextlib.AbstractContextManager:
    """The launcher's own progress line while it waits for a job on a cluster (local workers print theirs)."""
    if not progress_from_workers(run):
        return contextlib.nullcontext()
    return StagedProgress(run.layout.staging_dir(run.attempt))
