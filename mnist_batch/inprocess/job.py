"""The scoring job in this process, without Beam: the Beam job's steps called one after the other.

:func:`start` is the in-process twin of :func:`mnist_batch.scoring.launch.start`: the same environment
checks (but the runner's), then the shared launch sequence
(:func:`~mnist_batch.scoring.attempt.launch_settings`) with :func:`run_job` as the engine. The job:

1. the inputs expanded and checked, the labels CSV read (what ``build_pipeline`` does before any step);
2. each pattern listed by :func:`~mnist_batch.scoring.listing.classify_listing` (skipped entries
   counted by reason; a path met by two patterns scored once, as ``DropDuplicatePaths``);
3. files in groups of ``--max-batch-size``: read + decode + preprocess
   (:func:`~mnist_batch.scoring.decode_pool.decode_group`; from the second group on in the decode
   helper process while the model runs, :class:`~mnist_batch.scoring.decode_pool.DecodePool`), one model call per group
   (:class:`~mnist_batch.models.Predictor`, loaded from the checked bytes), rows by
   :func:`~mnist_batch.scoring.aggregate.predictions_chunk` and the error rows by
   :func:`~mnist_batch.scoring.aggregate.failure_row` (a group whose model call fails: one
   ``inference`` error row per file, as RunInference's dead letters);
4. each table through a :class:`~mnist_batch.runstore.shards.ShardBuffer` into the attempt's staging;
5. the statistics by the combiners' own methods, then
   :func:`~mnist_batch.scoring.attempt.commit_attempt`, the commit the Beam job makes in its last step.

A failure after the leases were taken commits nothing: the staging is deleted and the error is one
line (:class:`~mnist_batch.scoring.attempt.RunFailedError`), as a failed Beam job's.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mnist_batch.constants import COL_STAGE, KERAS_RUNTIME
from mnist_batch.files import local_path
from mnist_batch.inprocess.count import CountedProgress
from mnist_batch.inprocess.engine import list_inputs
from mnist_batch.models import Predictor
from mnist_batch.models.errors import ModelError
from mnist_batch.runstore import fs
from mnist_batch.runstore.commit import read_marker
from mnist_batch.runstore.errors import before_commit, storage_step
from mnist_batch.runstore.shards import ROWS_PER_GROUP, ShardBuffer
from mnist_batch.scoring.aggregate import (
    CountBy,
    PredictionStats,
    assemble_stats,
    confusion_rows,
    failure_row,
    per_class_rows,
    predictions_chunk,
    stamped,
)
from mnist_batch.scoring.attempt import (
    Attempt,
    LaunchRecord,
    RunFailedError,
    commit_attempt,
    launch_record,
    launch_settings,
    refuse_committed_run_id,
)
from mnist_batch.scoring.decode_pool import DecodedGroup, DecodePool, HelperModel, decode_group, helper_count
from mnist_batch.scoring.labels import LabelLookup, read_labels_csv
from mnist_batch.scoring.listing import Listed, ListedFile
from mnist_batch.scoring.options import ScoreSettings
from mnist_batch.scoring.preflight import check_environment
from mnist_batch.scoring.progress import ProgressLine
from mnist_batch.scoring.read import check_patterns_match, expand_inputs
from mnist_batch.scoring.summary import failure_line
from mnist_batch.scoring.teardown import abandon
from mnist_batch.tables import PIPELINE_TABLES, RUN_TABLES
from mnist_batch.trust import threshold_for

ENGINE = "inprocess"


def skip_pandas_probe() -> None:
    """Spares this process pyarrow's probe for pandas (0.1-0.25 s here: a quarter of a small run).

    pyarrow's first ``pa.array`` imports pandas only to tell pandas objects from others; the job
    builds its columns from numpy arrays and lists. With ``pandas`` unimportable for that first
    call, pyarrow records "no pandas" for its probes; what needs pandas itself (``to_pandas``)
    still imports it then (pyarrow retries the import whenever pandas is asked for). Nothing is
    done when pandas is imported already. For the CLI's process (a program's own process keeps
    pyarrow's usual behaviour: :func:`start` does not call this).
    """
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas:
    """A finder that refuses ``pandas`` (its submodules are never reached): for :func:`skip_pandas_probe`."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "pandas":
            raise ImportError("pandas is not needed by pyarrow's probe in this process")
        return None


def start(settings: ScoreSettings, listing: Sequence[Listed] | None = None) -> dict[str, Any]:
    """Runs ``settings`` in this process: the environment checked (output writable, no runner to
    check), then :func:`~mnist_batch.scoring.attempt.launch_settings` with :func:`run_job`; returns the
    committed summary. ``listing``: the inputs as ``--engine auto`` listed them to count them
    (:attr:`~mnist_batch.inprocess.engine.EngineChoice.listing`), scored as they are instead of
    listed again. Raises what :func:`mnist_batch.scoring.launch.start` raises for the same launch."""
    config = settings.config
    places = [("--model", config.model), *(("--input", i) for i in config.inputs)]
    check_environment(config.output, None, places, labels_csv=config.labels_csv)
    return launch_settings(settings, functools.partial(run_job, listing=listing), wait=True)


@dataclasses.dataclass
class Tally:
    """What the job counted: the combiners' accumulators and the matched files."""

    predictions: PredictionStats
    prediction_acc: list[Any]
    outcomes: CountBy
    outcome_acc: Any
    matched: int = 0

    @classmethod
    def new(cls, num_classes: int) -> Tally:
        predictions, outcomes = PredictionStats(num_classes), CountBy()
        return cls(predictions, predictions.create_accumulator(), outcomes, outcomes.create_accumulator())

    def count(self, kind: str, what: str, n: int = 1) -> None:
        """An error (``kind="errors"``, its stage) or a skipped entry (``"skipped"``, its reason)."""
        self.outcome_acc = self.outcomes.add_input(self.outcome_acc, ((kind, what), n))

    def stats(self) -> dict[str, Any]:
        """The run's statistics, as the Beam job's ``AssembleStats`` makes them."""
        return assemble_stats(
            self.predictions.extract_output(self.prediction_acc),
            self.matched,
            self.outcomes.extract_output(self.outcome_acc),
        )


class Scorer:
    """Groups of files -> predictions chunks and error rows into the tables' buffers, counted in a :class:`Tally`."""

    def __init__(
        self,
        run: Attempt,
        labels: LabelLookup,
        sinks: dict[str, ShardBuffer],
        tally: Tally,
        patterns: Sequence[str] = (),
        total: int | None = None,
    ) -> None:
        config, card = run.config, run.card
        self._run_id, self._model_id = run.layout.run_id, card.model_id
        self._max_bytes, self._max_pixels, self._batch = config.max_file_bytes, config.max_pixels, config.max_batch_size
        self._labels, self._sinks, self._tally = labels, sinks, tally
        self._helpers, self._groups, self._pool = helper_count(), 0, None
        self._predictor, self._helper_model = load_scorer(run, self._helpers)
        self._fields = {
            "class_names": tuple(card.class_names),
            "model_id": card.model_id,
            "run_id": self._run_id,
            "review_threshold": float(config.review_threshold),
            "scored_at": datetime.datetime.now(datetime.UTC),
            "not_digit_threshold": threshold_for(card.not_digit_check(), config.not_digit_threshold)[0],
        }
        self._rows: list[tuple[list[str], np.ndarray, np.ndarray]] = []  # scored groups not yet written
        self._progress = None
        if config.progress:
            self._progress = CountedProgress(ProgressLine(), patterns, config.extensions, config.output, total)

    def error(self, row: dict[str, Any]) -> None:
        self._sinks["errors"].add(stamped(row, self._run_id, self._model_id))
        self._tally.count("errors", row[COL_STAGE])

    def submit(self, paths: Sequence[str]) -> None:
        """One group of files to read + decode + preprocess, then score (:meth:`take`).

        With a decode helper (2+ cores, :func:`~mnist_batch.scoring.decode_pool.helper_count`), groups are
        decoded (and scored) in a helper process too, as the Beam job's decode step does on the
        single-process runner. The helper is started by a full first group (more may follow: it gets
        ready while this process scores that group), else by a second one; a run of one group has none.
        """
        self._groups += 1
        full = len(paths) >= self._batch
        if self._helpers and (self._groups >= 2 or full) and self._pool is None:
            self._pool = DecodePool(self._max_bytes, self._max_pixels, model=self._helper_model)
        sources = [(local_path(p), None) for p in paths]
        if self._pool is None:
            self.take(paths, decode_group(sources, self._max_bytes, self._max_pixels))
            return
        self._pool.submit(sources, list(paths))
        for done, group in self._pool.ready():
            self.take(done, group)

    def finish(self) -> None:
        """Scores the groups still in the helper, and stops it."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                done = pool.drain()
            finally:
                pool.close()  # waited for, so its CPU time is the run's
            for paths, group in done:
                self.take(paths, group)
        self._write_rows()

    def close(self) -> None:
        """Stops the helper (a run that failed) and the progress count."""
        if self._progress is not None:
            self._progress.close()
        if self._pool is not None:
            self._pool.close()

    def take(self, paths: Sequence[str], group: DecodedGroup) -> None:
        """A decoded group: its files' error rows, then one model call for those that decoded.

        Shapes: the decoded group is uint8 [N, 28, 28]; the model returns float32 [N, C] (or [N, C+1]
        with the not-digit output); its N rows are written with the next groups' (:meth:`_write_rows`).
        """
        for index, stage, error_type, message in group.failed:
            self.error(failure_row(paths[index], stage, error_type, message, self._run_id))
        if self._progress is not None:
            self._progress.add(len(paths))
        if not group.ok:
            return
        scored = list(paths) if len(group.ok) == len(paths) else [paths[i] for i in group.ok]
        probabilities = group.outputs  # the helper ran the model too, or:
        try:
            if group.model_failure is not None:
                raise InferenceFailed(*group.model_failure)
            if probabilities is None:
                probabilities = np.asarray(self._predictor(group.pixels), np.float32).reshape(len(scored), -1)
        except ModelError:
            raise  # the model itself (changed, damaged): the run fails, as on a Beam worker
        except Exception as exc:  # noqa: BLE001 -- a failed call is each file's dead letter, as RunInference's
            for path in scored:
                self.error(failure_row(path, "inference", *failure_of(exc), self._run_id))
            return
        self._rows.append((scored, group.blank, probabilities))
        if sum(len(paths) for paths, _, _ in self._rows) >= ROWS_PER_GROUP:
            self._write_rows()

    def _write_rows(self) -> None:
        """The groups scored since the last call as one predictions table (one row group of the shard),
        counted: rows and statistics cost ~0.55 µs a row at 4,096 rows, ~1.3 at 256 (``bench_rows.py``;
        ~2.9 inside a run at 256, between decoding and model calls: docs/benchmarks.md, "fourth session")."""
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        paths = [p for scored, _, _ in rows for p in scored]
        table = predictions_chunk(
            paths,
            self._labels.many(paths),
            np.concatenate([blank for _, blank, _ in rows]),
            np.concatenate([probabilities for _, _, probabilities in rows]),
            runtime_model_id=self._predictor.model_id,
            **self._fields,
        )
        self._sinks["predictions"].add(table)
        self._tally.prediction_acc = self._tally.predictions.add_input(self._tally.prediction_acc, table)


class InferenceFailed(Exception):
    """A model call that failed in the decode helper: its error type's name and message."""


def failure_of(exc: BaseException) -> tuple[str, str]:
    """``(error type name, message)`` of a failed model call, wherever it ran."""
    if isinstance(exc, InferenceFailed):
        return exc.args[0], exc.args[1]
    return type(exc).__name__, str(exc) or repr(exc)


def load_scorer(run: Attempt, helpers: int) -> tuple[Predictor, HelperModel | None]:
    """The run's model, and the same for the decode helper to run when there is one core per process
    and the runtime is an artifact's (LiteRT): then each process decodes and scores whole groups on
    one interpreter thread (on 2 cores, 4 % less wall time than one process running the model on 2
    threads beside a decoder). With more cores than processes the model's threads in this process
    outrun a helper's one, so the helper only decodes and this process runs the model on the rest."""
    from mnist_batch.models.files import read_checked_bytes
    from mnist_batch.models.runtimes import default_threads, get_runtime, load_artifact

    scorer = run.scorer
    if scorer.runtime == KERAS_RUNTIME or not helpers or default_threads() > helpers + 1:
        return Predictor.load(scorer.uri, scorer.model_id, runtime=scorer.runtime), None
    data, model_id = read_checked_bytes(scorer.uri, scorer.model_id)
    call = load_artifact(get_runtime(scorer.runtime), data, scorer.uri, 1)
    return Predictor(call, model_id, runtime=scorer.runtime), HelperModel(scorer.runtime, data)


def listed_files(listing: Iterable[Listed], tally: Tally) -> Iterator[str]:
    """The image files of a listing (:func:`~mnist_batch.inprocess.engine.list_inputs`), each counted
    in ``tally`` as matched; its skipped entries counted by reason."""
    for item in listing:
        if isinstance(item, ListedFile):
            tally.matched += 1
            yield item.path
        else:
            tally.count("skipped", item[1])


def score_files(
    run: Attempt, listing: Iterable[Listed], labels: LabelLookup, staging: str, patterns: Sequence[str] = ()
) -> tuple[dict, dict]:
    """The job's steps up to the commit, over ``listing`` (of ``patterns``): ``(stats, {table: [(shard
    path, rows)]})``."""
    tables = [t for t in run.layout.tables if t in PIPELINE_TABLES]
    sinks = {t: ShardBuffer(fs.join(staging, t), RUN_TABLES[t]) for t in tables}
    tally = Tally.new(len(run.card.class_names))
    total = sum(isinstance(i, ListedFile) for i in listing) if isinstance(listing, Sequence) else None
    scorer = Scorer(run, labels, sinks, tally, patterns, total)
    try:
        group: list[str] = []
        for path in listed_files(listing, tally):
            group.append(path)
            if len(group) >= run.config.max_batch_size:
                scorer.submit(group)
                group = []
        if group:
            scorer.submit(group)
        scorer.finish()
    finally:
        scorer.close()
    stats = tally.stats()
    matrix, names = np.asarray(stats["confusion_matrix"]), run.card.class_names
    for name, rows in (("confusion", confusion_rows(matrix, names)), ("per_class", per_class_rows(matrix, names))):
        for row in rows:
            sinks[name].add(stamped(row, run.layout.run_id, run.card.model_id))
    shards = {t: [written] if (written := sinks[t].close()) is not None else [] for t in tables}
    return stats, shards


def run_job(run: Attempt, listing: Sequence[Listed] | None = None) -> dict[str, Any]:
    """The engine of :func:`~mnist_batch.scoring.attempt.launch_settings`: the job of ``run``, committed;
    its committed summary (``summary.json``'s content). ``listing``: the inputs already listed (else
    listed here, after the checks)."""
    layout, config = run.layout, run.config
    with storage_step(f"read the committed runs under {layout.root}"):
        refuse_committed_run_id(run)
    record: LaunchRecord = launch_record(run, [], engine=ENGINE)
    if config.labels_csv:  # what build_pipeline checks before any step, in the same order
        labels = LabelLookup(run.card.class_names, read_labels_csv(config.labels_csv, run.card.class_names))
    else:
        labels = LabelLookup(run.card.class_names)
    patterns = expand_inputs(config.inputs)
    check_patterns_match(patterns)
    try:
        listed = listing if listing is not None else list_inputs(patterns, config)
        stats, shards = score_files(run, listed, labels, layout.staging_dir(run.attempt), patterns)
        commit_attempt(
            layout,
            run.attempt,
            shards,
            stats,
            record.as_dict(),
            max_error_rate=config.max_error_rate,
            replace=run.replace,
            held_leases=[lease.uri for lease in run.leases],
            fences=[lease.fence for lease in run.leases],
        )
    except ModelError:
        abandon(layout, run.attempt)
        raise  # one line, as the Beam launcher says a worker's model error (worker_errors)
    except KeyboardInterrupt:
        abandon(layout, run.attempt)  # Ctrl-C: nothing committed and no staged shard left behind
        raise
    except Exception as exc:
        outcome = abandon(layout, run.attempt, before_commit=before_commit(exc))
        raise RunFailedError(f"run {layout.run_id} failed{outcome}: {failure_line(exc)}") from exc
    return {**read_marker(layout.marker), "metrics": metrics_of(stats)}


def metrics_of(stats: dict[str, Any]) -> dict[str, int]:
    """The Beam job's main counters, from the statistics (``summary["metrics"]``)."""
    counts = stats["counts"]
    metrics = {
        "files_matched": counts["matched"],
        "files_skipped": counts["skipped"],
        "images_decoded": counts["matched"] - sum(n for s, n in stats["errors_by_stage"].items() if s != "inference"),
        "scored": counts["scored"],
        "low_confidence": counts["low_confidence"],
        "blank": counts["blank"],
    }
    metrics.update({f"{stage}_errors": n for stage, n in stats["errors_by_stage"].items()})
    return metrics
