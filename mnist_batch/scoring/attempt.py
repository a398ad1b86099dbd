"""One launch, Beam-free: checked and claimed, its record, and the commit of what its job counted.

:func:`launch_settings` is the launch sequence both engines share (the Beam job,
:mod:`mnist_batch.scoring.launch`; the in-process job, :mod:`mnist_batch.inprocess.job`): the run
id, the model against its card, the runtime, the output place, the leases, the recovery of earlier
commits, then the engine's ``run`` with one :class:`Attempt`. :func:`commit_attempt` is the commit
both make once every shard is final (in the Beam job, :class:`~mnist_batch.scoring.commit_step.CommitRunFn`
calls it). Nothing here imports Beam (``tests/test_architecture.py``).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from mnist_batch.config import ScoreConfig
from mnist_batch.errors import MnistBatchError
from mnist_batch.files import is_remote, local_path
from mnist_batch.model_card import ModelCard
from mnist_batch.models import ScoringModel, check_model, choose_runtime
from mnist_batch.review import review_threshold_for
from mnist_batch.runstore import claims, fs
from mnist_batch.runstore.commit import commit_run, recover
from mnist_batch.runstore.errors import storage_step
from mnist_batch.runstore.history import committed_runs
from mnist_batch.runstore.layout import Layout
from mnist_batch.runstore.roots import prepare_root
from mnist_batch.runstore.run_ids import check_run_id
from mnist_batch.runstore.shards import ShardWriter, new_shard_path
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.options import RunOptions, ScoreSettings
from mnist_batch.scoring.summary import run_summary
from mnist_batch.scoring.teardown import release_all
from mnist_batch.tables import RUNS_SCHEMA, RUNS_TABLE, SUMMARY_FILE, runs_row
from mnist_batch.trust import threshold_for


class RunFailedError(ScoringError):
    """The job failed; nothing was committed (the message is the cause, in one line)."""


@dataclasses.dataclass(frozen=True)
class LaunchRecord:
    """What the launcher knew, for the run's summary.json (:meth:`as_dict`, the summary's keys)."""

    model: str
    model_id: str
    model_name: str
    class_names: list[str]
    runtime: dict[str, Any]
    """The runtime fields (:meth:`mnist_batch.models.ScoringModel.summary`)."""
    run_id: str
    runner: str
    inputs: list[str]
    output: str
    layout: str
    review_threshold: float
    review_threshold_source: str
    """``model card``, ``--review-threshold``, or ``default: the model card has none``."""
    not_digit_threshold: float | None
    """The run's not-digit threshold (None: the model has no check, ``not_digit`` is null)."""
    not_digit_threshold_source: str
    """``model card``, ``--not-digit-threshold``, or ``none``."""
    max_error_rate: float | None
    expect_model_id: str | None
    tables: dict[str, str]
    summary_path: str
    marker: str
    started_at: str
    started_at_epoch: float
    runs: dict[str, Any] | None = None
    """``runs`` layout only: root, dt, run_path and the incremental settings."""
    model_reference: dict[str, Any] | None = None
    """The card's held-out reference (:meth:`ModelCard.stored_reference`): monitoring judges the run with it."""
    engine: str = "beam"
    """Which engine ran the job: ``beam`` or ``inprocess`` (``--engine``)."""
    engine_reason: str = ""
    """Why that engine (``--engine auto``'s choice, or the flag)."""

    def as_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        runtime, runs = fields.pop("runtime"), fields.pop("runs")
        head = {k: fields.pop(k) for k in ("model", "model_id", "model_name", "class_names")}
        return {**head, **runtime, **fields, **(runs or {})}


class LaunchGoneError(ScoringError):
    """The job reached its commit after its launcher died: nothing is committed."""


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
      review_source: where the run's review threshold came from.
    """

    settings: ScoreSettings
    layout: Layout
    attempt: str
    card: ModelCard
    scorer: ScoringModel
    replace: bool
    leases: tuple[claims.Lease, ...]
    wait: bool
    review_source: str = "model card"
    """Where ``config.review_threshold`` came from (:func:`mnist_batch.review.review_threshold_for`)."""

    @property
    def config(self) -> ScoreConfig:
        return self.settings.config

    @property
    def options(self) -> RunOptions:
        return self.settings.run

    @property
    def beam_options(self) -> Any:
        """Beam's ``PipelineOptions`` (built when first asked: the Beam engine only)."""
        return self.settings.pipeline_options

    @property
    def runner(self) -> str:
        return self.settings.runner


def launch_settings(
    settings: ScoreSettings,
    run_attempt: Callable[[Attempt], dict[str, Any]],
    *,
    card: ModelCard | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Scores ``settings.config.inputs`` into its output in the given layout; returns the summary.

    Args:
      settings: everything the launch was asked for, decided once (:meth:`ScoreSettings.of`): the
        config (``config.output`` is the flat folder or the runs root; its run id set), the layout
        and production options, Beam's options and the runner's name.
      card: the model's card when the caller already checked the model.
      run_attempt: the engine: builds and runs the job of an :class:`Attempt`, returns its summary.
      wait: wait for the job and return its committed summary; else return once submitted
        (``{"state": "submitted", ...}``; the job commits itself).

    Raises:
      ScoringError: bad run id, model, output or input (nothing run); ClaimError: the run id
        (or, flat, the output; incremental, the root) is held by a live launch; RunFailedError: the
        job failed and nothing was committed.
    """
    config, options = settings.config, settings.run
    run_id = check_run_id(config.run_id)
    card = card or check_model(config.model, options.expect_model_id, load=False)
    settings, review_source = resolve_review(settings, card)
    config = settings.config
    scorer = choose_runtime(config.model, card, config.runtime)
    dt = options.run_date or datetime.datetime.now(datetime.UTC).date().isoformat()
    layout = Layout(options.layout, config.output, run_id, dt if options.layout == "runs" else None)
    replace = options.replace if layout.kind == "runs" else config.overwrite
    with storage_step(f"prepare the run store {layout.root}"):
        prepare_root(layout, config.overwrite)
    attempt = f"{run_id}.{uuid.uuid4().hex[:12]}"
    with storage_step(f"claim run {run_id} under {layout.root}"):
        leases = [claim_run(layout, attempt, detached=not wait)]
    owns_output = layout.kind == "flat" and wait  # a flat output holds one run: leased while it runs
    try:
        if owns_output:
            with storage_step(f"claim the output {layout.root}"):
                leases.append(claim_output(layout, attempt))
        with storage_step(f"claim the incremental history of {layout.root}"):
            if options.incremental:
                leases.append(claim_history(layout, attempt, detached=not wait))
        with storage_step(f"recover earlier commits under {layout.root}"):
            recovered = recover(layout.root, claims.live_attempts(layout.root))
            if owns_output:  # the output is this launch's: dead launches' leases go too
                claims.remove_stale_leases(layout.root)
        run = Attempt(settings, layout, attempt, card, scorer, replace, tuple(leases), wait, review_source)
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


def resolve_review(settings: ScoreSettings, card: ModelCard) -> tuple[ScoreSettings, str]:
    """``settings`` with the review threshold decided once (``--review-threshold``, the card's, or 0.9),
    and where it came from: every step after the launch reads ``settings.config.review_threshold``."""
    threshold, source = review_threshold_for(card.review_threshold(), settings.config.review_threshold)
    return settings.replaced(config=dataclasses.replace(settings.config, review_threshold=threshold)), source


def claim_run(layout: Layout, attempt: str, *, detached: bool) -> claims.Lease:
    """The lease on the run id (a second live launch of it is refused)."""
    what = f"run {layout.run_id} under {layout.root}"
    return claims.claim(
        layout.root, f"run={layout.run_id}", run_id=layout.run_id, attempt=attempt, detached=detached, what=what
    )


def claim_output(layout: Layout, attempt: str) -> claims.Lease:
    """The lease on a flat output, which holds one run: a second live launch into it is refused at
    once whatever its run id (without it, both would score everything and the second learn only at
    its commit). Taken by launches that wait only: a detached job that failed would leave it for
    :data:`~mnist_batch.runstore.claims.DETACHED_TTL_S`, and its commit still refuses to land on
    another run's outputs."""
    what = f"the output {layout.root}"
    return claims.claim(layout.root, "output", run_id=layout.run_id, attempt=attempt, what=what)


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


def launch_record(run: Attempt, earlier: list[tuple[str, str]], engine: str = "beam") -> LaunchRecord:
    """What the launcher knows about ``run``, for its summary; ``engine``: the engine that runs its job."""
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
        review_threshold_source=run.review_source,
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
        engine=engine,
        engine_reason=run.settings.engine_reason,
    )


def canonical(path: str) -> str:
    """A local path (or ``file://`` URI) made an absolute path, so the summary means the same thing read
    from any folder; remote URIs as given."""
    return path if is_remote(path) else os.path.abspath(local_path(path))


def commit_attempt(
    layout: Layout,
    attempt: str,
    shards: dict[str, list[tuple[str, int]]],
    stats: dict[str, Any],
    launch: dict[str, Any],
    *,
    max_error_rate: float | None,
    replace: bool,
    held_leases: list[str] = (),
    fences: list[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The run's summary from its stats, then its commit (:func:`commit.commit_run`); returns the summary.

    Args:
      layout, attempt: the run and this launch's attempt (its staging folder).
      shards: table name -> the ``(path, rows)`` of each of its final shards in staging.
      stats: the job's statistics (:func:`~mnist_batch.scoring.aggregate.summarize`).
      launch: what the launcher knew (:meth:`LaunchRecord.as_dict`).
      held_leases: leases the launch must still hold (else :class:`LaunchGoneError`: its launcher died).
      fences: the launch's ``(lease uri, token)`` pairs, checked before anything moves.
    """
    summary = run_summary(stats, launch, max_error_rate)
    # A lease taken over since (a new token) says so first; a launcher that died with its
    # token still in place is caught by the liveness check after it.
    claims.check_held(fences, f"commit run {layout.run_id}")
    for uri in held_leases:
        if not claims.held_by(uri, attempt):
            raise LaunchGoneError(
                f"run {layout.run_id}: not committing attempt {attempt}: its launch no longer "
                f"holds {uri} (the launcher died, or another launch took the run over)"
            )
    emitted = {table: [path for path, _ in written] for table, written in shards.items()}
    rows = {path: count for written in shards.values() for path, count in written}
    if RUNS_TABLE in layout.tables:  # the run's row of the runs table, moved in the same commit
        writer = ShardWriter(new_shard_path(fs.join(layout.staging_dir(attempt), RUNS_TABLE)), RUNS_SCHEMA)
        writer.write(pa.Table.from_pylist([runs_row(summary)], schema=RUNS_SCHEMA))
        path = writer.close()
        emitted[RUNS_TABLE], rows[path] = [path], 1
    with storage_step(f"commit run {layout.run_id} into {layout.root}"):
        commit_run(layout, attempt, emitted, summary, replace=replace, fences=list(fences), rows=rows)
    return summary
