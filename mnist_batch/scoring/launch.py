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
import dataclasses
import datetime
import os
import sys
import time
import uuid
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from mnist_batch.config import ScoreConfig
from mnist_batch.errors import MnistBatchError
from mnist_batch.files import is_remote, local_path
from mnist_batch.model_card import ModelCard
from mnist_batch.models import ScoringModel, check_model, choose_runtime
from mnist_batch.runstore import claims, fs, storage
from mnist_batch.runstore.beam_s3 import bound_beam_client
from mnist_batch.runstore.commit import read_marker, recover
from mnist_batch.runstore.errors import before_commit, storage_step
from mnist_batch.runstore.history import committed_runs
from mnist_batch.runstore.layout import Layout
from mnist_batch.runstore.roots import prepare_root
from mnist_batch.runstore.run_ids import check_run_id
from mnist_batch.scoring.commit_step import CommitRunFn, LaunchRecord
from mnist_batch.scoring.counters import metric_counters
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.incremental import SelectFiles
from mnist_batch.scoring.options import RunOptions, ScoreSettings
from mnist_batch.scoring.pipeline import build_pipeline
from mnist_batch.scoring.preflight import check_environment
from mnist_batch.scoring.progress import StagedProgress, progress_dir
from mnist_batch.scoring.runners import LOCAL_RUNNERS
from mnist_batch.scoring.sinks import WriteTable
from mnist_batch.scoring.summary import failure_line
from mnist_batch.scoring.teardown import abandon, release_all
from mnist_batch.tables import (
    PIPELINE_TABLES,
    SUMMARY_FILE,
)
from mnist_batch.trust import threshold_for


class RunFailedError(ScoringError):
    """The job failed; nothing was committed (the message is the cause, in one line)."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One launch, checked and claimed: everything its job is built and run from.

    Attributes:
      settings: what the launch was asked for, decided once (config, options, Beam's options, runner).
      layout: where the run's tables and metadata go.
      attempt: this launch's id (``<run id>.<random>``): its staging folder and leases.
      card: the model's card.
      scorer: the runtime that scores, its checked file.
      replace: replace an earlier run (``--replace``, or ``--overwrite`` in the flat layout).
      leases: the leases this launch holds.
      wait: wait for the job (else return once submitted; the job releases the leases).
    """

    settings: ScoreSettings
    layout: Layout
    attempt: str
    card: ModelCard
    scorer: ScoringModel
    replace: bool
    leases: tuple[claims.Lease, ...]
    wait: bool

    @property
    def config(self) -> ScoreConfig:
        return self.settings.config

    @property
    def options(self) -> RunOptions:
        return self.settings.run

    @property
    def beam_options(self) -> PipelineOptions:
        return self.settings.pipeline_options

    @property
    def runner(self) -> str:
        return self.settings.runner


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
    """Scores ``settings.config.inputs`` into its output in the given layout; returns the summary.

    Args:
      settings: everything the launch was asked for, decided once (:meth:`ScoreSettings.of`): the
        config (``config.output`` is the flat folder or the runs root; its run id set), the layout
        and production options, Beam's options and the runner's name.
      card: the model's card when the caller already checked the model.
      wait: wait for the job and return its committed summary; else return once submitted
        (``{"state": "submitted", ...}``; the job commits itself).

    Raises:
      ScoringError: bad run id, model, output or input (nothing run); ClaimError: the run id
        (or, incremental, the root) is held by a live launch; RunFailedError: the job failed
        and nothing was committed.
    """
    config, options = settings.config, settings.run
    run_id = check_run_id(config.run_id)
    card = card or check_model(config.model, options.expect_model_id, load=False)
    scorer = choose_runtime(config.model, card, config.runtime)
    dt = options.run_date or datetime.datetime.now(datetime.UTC).date().isoformat()
    layout = Layout(options.layout, config.output, run_id, dt if options.layout == "runs" else None)
    replace = options.replace if layout.kind == "runs" else config.overwrite
    with storage_step(f"prepare the run store {layout.root}"):
        prepare_root(layout, config.overwrite)
    attempt = f"{run_id}.{uuid.uuid4().hex[:12]}"
    with storage_step(f"claim run {run_id} under {layout.root}"):
        leases = [claim_run(layout, attempt, detached=not wait)]
    try:
        with storage_step(f"claim the incremental history of {layout.root}"):
            if options.incremental:
                leases.append(claim_history(layout, attempt, detached=not wait))
        with storage_step(f"recover earlier commits under {layout.root}"):
            recovered = recover(layout.root, claims.live_attempts(layout.root))
        run = Attempt(settings, layout, attempt, card, scorer, replace, tuple(leases), wait)
        summary = run_attempt(run)
    except BaseException as exc:
        left = release_all(leases, layout.root)
        if left and isinstance(exc, MnistBatchError):
            raise type(exc)(f"{exc}; {left}") from exc  # one line still, the lease named
        raise
    if wait:
        left = release_all(leases, layout.root)
        if left:
            print(f"mnist-batch: note: {left}", file=sys.stderr)
    return {**summary, "recovered": {k: recovered[k] for k in ("completed", "rolled_back", "uncommitted")}}


def claim_run(layout: Layout, attempt: str, *, detached: bool) -> claims.Lease:
    """The lease on the run id (a second live launch of it is refused)."""
    what = f"run {layout.run_id} under {layout.root}"
    return claims.claim(
        layout.root, f"run={layout.run_id}", run_id=layout.run_id, attempt=attempt, detached=detached, what=what
    )


def claim_history(layout: Layout, attempt: str, *, detached: bool) -> claims.Lease:
    """The lease on the root's incremental history (one incremental run at a time)."""
    what = f"the incremental history of {layout.root}"
    return claims.claim(layout.root, "incremental", run_id=layout.run_id, attempt=attempt, detached=detached, what=what)


def refuse_committed_run_id(run: Attempt) -> None:
    """A committed run id is replaced only with ``--replace``."""
    if run.layout.kind != "runs":
        return
    committed = [r.dt for r in committed_runs(run.layout.root) if r.run_id == run.layout.run_id]
    if committed and not run.replace:
        raise ScoringError(
            f"run {run.layout.run_id} is already committed under {run.layout.root} (dt={committed[0]}); "
            "pass --replace to replace it, or use another --run-id"
        )


def earlier_runs(run: Attempt) -> list[tuple[str, str]]:
    """``(dt, run_id)`` of the committed runs whose files an incremental run skips (none otherwise)."""
    if run.layout.kind != "runs" or not run.options.incremental:
        return []
    return [(r.dt, r.run_id) for r in committed_runs(run.layout.root) if r.run_id != run.layout.run_id]


def launch_record(run: Attempt, earlier: list[tuple[str, str]]) -> LaunchRecord:
    """What the launcher knows about ``run``, for its summary."""
    config, layout = run.config, run.layout
    not_digit = threshold_for(run.card.not_digit_check(), config.not_digit_threshold)
    runs = None
    if layout.kind == "runs":
        incremental = {"enabled": run.options.incremental, "key": run.options.incremental_key}
        runs = {
            "root": layout.root,
            "dt": layout.dt,
            "run_path": layout.meta_dir,
            "incremental": {**incremental, "earlier_runs": len(earlier)},
        }
    return LaunchRecord(
        model=canonical(config.model),
        model_id=run.card.model_id,
        model_name=run.card.model_name,
        class_names=list(run.card.class_names),
        runtime=run.scorer.summary(),
        run_id=layout.run_id,
        runner=run.runner,
        inputs=[canonical(i) for i in config.inputs],
        output=layout.root,
        layout=layout.kind,
        review_threshold=config.review_threshold,
        not_digit_threshold=not_digit[0],
        not_digit_threshold_source=not_digit[1],
        max_error_rate=config.max_error_rate,
        expect_model_id=run.options.expect_model_id,
        tables={t: layout.table_dir(t) for t in layout.tables},
        summary_path=fs.join(layout.meta_dir, SUMMARY_FILE),
        marker=layout.marker,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        started_at_epoch=time.time(),
        runs=runs,
        model_reference=run.card.stored_reference(),
    )


def canonical(path: str) -> str:
    """A local path (or ``file://`` URI) made an absolute path, so the summary means the same thing read
    from any folder; remote URIs as given."""
    return path if is_remote(path) else os.path.abspath(local_path(path))


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
