"""One launcher for every output layout: check, claim, build, write to staging, commit in the job.

:func:`launch` runs a scoring job end to end:

1. check the run id, the model against its card (and ``expect_model_id``), the output place
   (a flat folder, or a runs root with its layout file);
2. claim the run id (and, for ``--incremental``, the root's history) with a lease, so a second
   launch of a live run is refused (:mod:`mnist_batch.scoring.claims`);
3. finish commits cut short and delete the staging of dead launches (:func:`commit.recover`);
4. build the pipeline (:func:`~mnist_batch.scoring.pipeline.build_pipeline`), write every
   table's shards into this attempt's staging folder, and add :class:`CommitRunFn`, which
   writes the summary and commits the run *inside the job* once every shard is final;
5. run it; with ``wait`` return the committed summary, else return once submitted.

A run that fails anywhere commits nothing: its staging folder is deleted (or by the next
launch, if the launcher itself died), and the error is one line.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from mnist_batch.config import ScoreConfig
from mnist_batch.model_card import ModelCard
from mnist_batch.models import check_model, choose_runtime
from mnist_batch.scoring import claims, fs
from mnist_batch.scoring.commit import Layout, commit_run, read_marker, recover
from mnist_batch.scoring.counters import metric_counters
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.history import SelectFiles, committed_runs
from mnist_batch.scoring.options import RunOptions
from mnist_batch.scoring.pipeline import build_pipeline
from mnist_batch.scoring.roots import prepare_root
from mnist_batch.scoring.run_ids import check_run_id, default_run_id
from mnist_batch.scoring.runners import LOCAL_RUNNERS, runner_name
from mnist_batch.scoring.sinks import WriteTable
from mnist_batch.scoring.summary import failure_line, run_summary
from mnist_batch.tables import CLAIMS_DIR, STAGING_DIR, SUMMARY_FILE


class RunFailedError(ScoringError):
    """The job failed; nothing was committed (the message is the cause, in one line)."""


class LaunchGoneError(ScoringError):
    """The job reached its commit after its launcher died: nothing is committed."""


class CommitRunFn(beam.DoFn):
    """Stats -> the run's summary, then its commit (:func:`commit.commit_run`), inside the job.

    Its side inputs are the shard paths each table's writer emits once the shard is closed,
    so it runs only when every table is complete; committing in the job means a launcher that
    does not wait (Dataflow templates, detached launches) still gets committed runs.

    A launch that waits holds its leases while the job runs (``held_leases``); if its launcher
    died meanwhile (SIGKILL, lost host), the job runs on on a cluster, and this step refuses to
    commit (:class:`LaunchGoneError`): the job fails, nothing is committed, and the next launch
    on the root deletes the staging (:func:`commit.recover`).
    """

    def __init__(
        self,
        layout: Layout,
        attempt: str,
        tables: list[str],
        launch_info: dict[str, Any],
        *,
        max_error_rate: float | None,
        replace: bool,
        detached_leases: list[str],
        held_leases: list[str] = (),
    ) -> None:
        self._held_leases = list(held_leases)
        self._layout = layout
        self._attempt = attempt
        self._tables = tables
        self._launch = launch_info
        self._max_error_rate = max_error_rate
        self._replace = replace
        self._detached_leases = detached_leases

    def process(self, stats: dict[str, Any], *shards) -> Iterator[str]:
        summary = run_summary(stats, self._launch, self._max_error_rate)
        for uri in self._held_leases:
            if not claims.held_by(uri, self._attempt):
                raise LaunchGoneError(
                    f"run {self._layout.run_id}: not committing attempt {self._attempt}: its launch no longer "
                    f"holds {uri} (the launcher died, or another launch took the run over)"
                )
        commit_run(
            self._layout,
            self._attempt,
            dict(zip(self._tables, (list(s) for s in shards), strict=True)),
            summary,
            replace=self._replace,
        )
        for uri in self._detached_leases:
            claims.release_lease(uri, self._attempt)
        yield self._layout.marker


def launch(
    config: ScoreConfig,
    options: RunOptions | None = None,
    beam_args: list[str] | None = None,
    *,
    card: ModelCard | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Scores ``config.inputs`` into ``config.output`` in the given layout; returns the summary.

    Args:
      config: the run's settings (``config.output`` is the flat folder or the runs root).
      options: layout and production options (default: flat).
      beam_args: Beam pipeline options (``--runner`` ...).
      card: the model's card when the caller already checked the model.
      wait: wait for the job and return its committed summary; else return once submitted
        (``{"state": "submitted", ...}``; the job commits itself).

    Raises:
      ScoringError: bad run id, model, output or input (nothing run); ClaimError: the run id
        (or, incremental, the root) is held by a live launch; RunFailedError: the job failed
        and nothing was committed.
    """
    options = options or RunOptions()
    beam_options = PipelineOptions(beam_args or [])
    runner = runner_name(beam_options)
    run_id = check_run_id(config.run_id or default_run_id())
    card = card or check_model(config.model, options.expect_model_id, load=False)
    scorer = choose_runtime(config.model, card, config.runtime)
    dt = options.run_date or datetime.datetime.now(datetime.UTC).date().isoformat()
    layout = Layout(options.layout, config.output, run_id, dt if options.layout == "runs" else None)
    replace = options.replace if layout.kind == "runs" else config.overwrite
    prepare_root(layout, config.overwrite)
    attempt = f"{run_id}.{uuid.uuid4().hex[:12]}"
    detached = not wait
    leases = [
        claims.claim(
            layout.root,
            f"run={run_id}",
            run_id=run_id,
            attempt=attempt,
            detached=detached,
            what=f"run {run_id} under {layout.root}",
        )
    ]
    try:
        if options.incremental:
            leases.append(
                claims.claim(
                    layout.root,
                    "incremental",
                    run_id=run_id,
                    attempt=attempt,
                    detached=detached,
                    what=f"the incremental history of {layout.root}",
                )
            )
        recover(layout.root, claims.live_attempts(layout.root))
        summary = _run(config, options, layout, attempt, card, scorer, beam_options, runner, replace, leases, wait)
    except BaseException:
        for lease in leases:
            lease.release()
        tidy(layout.root)
        raise
    if wait:
        for lease in leases:
            lease.release()
        tidy(layout.root)
    return summary


def tidy(root: str) -> None:
    """Removes the staging and lease folders of ``root`` when nothing is left in them."""
    fs.remove_empty_dir(fs.join(root, STAGING_DIR))
    fs.remove_empty_dir(fs.join(root, CLAIMS_DIR))


def _run(config, options, layout, attempt, card, scorer, beam_options, runner, replace, leases, wait) -> dict[str, Any]:
    run_id = layout.run_id
    if layout.kind == "runs":
        committed = [r.dt for r in committed_runs(layout.root) if r.run_id == run_id]
        if committed and not replace:
            raise ScoringError(
                f"run {run_id} is already committed under {layout.root} (dt={committed[0]}); "
                "pass --replace to replace it, or use another --run-id"
            )
    if config.progress is False and runner in LOCAL_RUNNERS:
        config = dataclasses.replace(config, progress=True)
    config = dataclasses.replace(config, run_id=run_id)
    launch_info: dict[str, Any] = {
        "model": config.model,
        "model_id": card.model_id,
        "model_name": card.model_name,
        "class_names": list(card.class_names),
        **scorer.summary(),
        "run_id": run_id,
        "runner": runner,
        "inputs": list(config.inputs),
        "output": layout.root,
        "layout": layout.kind,
        "review_threshold": config.review_threshold,
        "max_error_rate": config.max_error_rate,
        "expect_model_id": options.expect_model_id,
        "tables": {t: layout.table_dir(t) for t in layout.tables},
        "summary_path": fs.join(layout.meta_dir, SUMMARY_FILE),
        "marker": layout.marker,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "started_at_epoch": time.time(),
    }
    select = None
    if layout.kind == "runs":
        earlier = []
        if options.incremental:
            earlier = [(r.dt, r.run_id) for r in committed_runs(layout.root) if r.run_id != run_id]
        launch_info.update(
            {
                "root": layout.root,
                "dt": layout.dt,
                "run_path": layout.meta_dir,
                "incremental": {
                    "enabled": options.incremental,
                    "key": options.incremental_key,
                    "earlier_runs": len(earlier),
                },
            }
        )
        select = SelectFiles(layout.root, run_id, options.incremental_key, earlier, config.max_file_bytes)
    p = beam.Pipeline(options=beam_options)
    outputs = build_pipeline(p, config, card=card, scorer=scorer, select_files=select)
    staging = layout.staging_dir(attempt)
    tables = list(layout.tables)
    shards = [getattr(outputs, t) | f"Write{t.title().replace('_', '')}" >> WriteTable(staging, t) for t in tables]
    commit_fn = CommitRunFn(
        layout,
        attempt,
        tables,
        launch_info,
        max_error_rate=config.max_error_rate,
        replace=replace,
        detached_leases=[lease.uri for lease in leases] if not wait else [],
        held_leases=[lease.uri for lease in leases] if wait else [],
    )
    outputs.stats | "CommitRun" >> beam.ParDo(commit_fn, *[beam.pvalue.AsList(s) for s in shards])
    try:
        result = p.run()
        if not wait:
            return {**launch_info, "state": "submitted", "attempt": attempt, "exit_code": 0, "failure": None}
        result.wait_until_finish()
    except Exception as exc:
        abandon(layout, attempt)
        raise RunFailedError(f"run {run_id} failed, nothing committed: {failure_line(exc)}") from exc
    summary = read_marker(layout.marker)
    if not summary or summary.get("attempt") != attempt:
        abandon(layout, attempt)
        raise RunFailedError(f"run {run_id}: the job finished but did not commit ({layout.marker})")
    return {**summary, "metrics": metric_counters(result)}


def abandon(layout: Layout, attempt: str) -> None:
    """Deletes a failed attempt's staging folder, unless its commit had started (then it completes later)."""
    from mnist_batch.scoring.commit import pending_journals

    if any(json.loads(fs.read_text(j)).get("attempt") == attempt for j in pending_journals(layout.root)):
        return
    fs.delete_tree(layout.staging_dir(attempt))
