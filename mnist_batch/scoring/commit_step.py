"""The in-job commit: the last step of every scoring job writes the run's summary and commits it.

:class:`CommitRunFn` runs inside the job, once every table's shards are final (its side inputs), so
a launcher that does not wait (Dataflow templates, detached launches) still gets committed runs;
:class:`LaunchRecord` is what the launcher knew, handed to it for the summary. The launcher is
:mod:`mnist_batch.scoring.launch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from mnist_batch.runstore import claims, fs
from mnist_batch.runstore.commit import commit_run
from mnist_batch.runstore.errors import storage_step
from mnist_batch.runstore.layout import Layout
from mnist_batch.runstore.shards import ShardWriter, new_shard_path
from mnist_batch.scoring.beam_s3 import bound_beam_client
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.summary import run_summary
from mnist_batch.tables import RUNS_SCHEMA, RUNS_TABLE, runs_row


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

    def as_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        runtime, runs = fields.pop("runtime"), fields.pop("runs")
        head = {k: fields.pop(k) for k in ("model", "model_id", "model_name", "class_names")}
        return {**head, **runtime, **fields, **(runs or {})}


class LaunchGoneError(ScoringError):
    """The job reached its commit after its launcher died: nothing is committed."""


class CommitRunFn(beam.DoFn):
    """Stats -> the run's summary, then its commit (:func:`commit.commit_run`), inside the job.

    Its side inputs are the ``(path, rows)`` each table's writer emits once the shard is closed,
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
        record: LaunchRecord,
        *,
        max_error_rate: float | None,
        replace: bool,
        detached_leases: list[str],
        held_leases: list[str] = (),
        fences: list[tuple[str, str]] | None = None,
        s3_options: dict[str, Any] | None = None,
    ) -> None:
        self._s3_options = s3_options
        self._held_leases = list(held_leases)
        self._layout = layout
        self._attempt = attempt
        self._tables = tables
        self._launch = record.as_dict()
        self._max_error_rate = max_error_rate
        self._replace = replace
        self._detached_leases = detached_leases
        self._fences = list(fences or [])

    def setup(self) -> None:
        fs.configure_s3(self._s3_options)  # the job's --s3_* options, on whichever worker this runs
        bound_beam_client()  # the runs table's shard goes up through Beam's S3 filesystem

    def process(self, stats: dict[str, Any], *shards) -> Iterator[str]:
        summary = run_summary(stats, self._launch, self._max_error_rate)
        # A lease taken over since (a new token) says so first; a launcher that died with its
        # token still in place is caught by the liveness check after it.
        claims.check_held(self._fences, f"commit run {self._layout.run_id}")
        for uri in self._held_leases:
            if not claims.held_by(uri, self._attempt):
                raise LaunchGoneError(
                    f"run {self._layout.run_id}: not committing attempt {self._attempt}: its launch no longer "
                    f"holds {uri} (the launcher died, or another launch took the run over)"
                )
        emitted = dict(zip(self._tables, ([path for path, _ in s] for s in shards), strict=True))
        rows = {path: count for s in shards for path, count in s}
        if RUNS_TABLE in self._layout.tables:  # the run's row of the runs table, moved in the same commit
            writer = ShardWriter(
                new_shard_path(fs.join(self._layout.staging_dir(self._attempt), RUNS_TABLE)), RUNS_SCHEMA
            )
            writer.write(pa.Table.from_pylist([runs_row(summary)], schema=RUNS_SCHEMA))
            path = writer.close()
            emitted[RUNS_TABLE], rows[path] = [path], 1
        with storage_step(f"commit run {self._layout.run_id} into {self._layout.root}"):
            commit_run(
                self._layout,
                self._attempt,
                emitted,
                summary,
                replace=self._replace,
                fences=self._fences,
                rows=rows,
            )
        tokens = dict(self._fences)
        for uri in self._detached_leases:
            claims.release_lease(uri, tokens[uri])
        yield self._layout.marker
