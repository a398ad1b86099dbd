"""Production runs: one folder per run under a root, committed with ``_SUCCESS``, optionally incremental.

Layout (``--layout runs``; Hive-style partitions, so pyarrow, DuckDB and Spark see ``dt``/``run``)::

    ROOT/dt=YYYY-MM-DD/run=ID/predictions/part-*.parquet
                             /errors/  /confusion/  /per_class/    the tables of a flat run
                             /manifest/part-*.parquet              files this run took on (MANIFEST_SCHEMA)
                             /summary.json
                             /_SUCCESS                             written last; holds the summary JSON

Semantics:

* A run is committed only when ``_SUCCESS`` exists. The pipeline's last step,
  :class:`CommitRunFn`, writes ``summary.json`` then ``_SUCCESS`` once every Parquet sink has
  finalised its shards (their output file names are its side inputs), so the commit happens in
  the job even when the launcher does not wait (flex templates). Readers (:func:`read_runs`) and
  ``--incremental`` look at committed runs only.
* Rerunning a run id first deletes every folder of that id (under any ``dt=``), ``_SUCCESS``
  first, so a rerun replaces the run completely: no leftover shards, no duplicate rows, and a
  rerun killed half-way leaves an uncommitted run, never a mixed one.
* ``--incremental`` skips matched files that an earlier committed run (not the one being
  rerun) already took on: key ``stat`` = (path, size, mtime), ``hash`` = (path, sha256 of the
  content). Files whose error was transient (``read`` or ``inference`` stage) are retried.
  The known keys are read once at launch from the earlier runs' manifests with pyarrow (through
  Beam's FileSystems, so ``gs://`` works) and handed to the filter DoFn as a set. Skipped files
  go to the pipeline's ``skipped`` output with reason :data:`SKIP_ALREADY_SCORED`, so they are
  counted in ``summary.json`` (``counts.skipped``, ``skipped_by_reason``) like any other skip.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from mnist_batch.config import ScoreConfig
from mnist_batch.constants import COL_PATH, COL_RUN_ID, COL_STAGE
from mnist_batch.scoring.dofns import METRICS_NAMESPACE, SKIPPED_TAG, LoadedFile, read_bytes
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.model_handler import check_model
from mnist_batch.scoring.pipeline import (
    LOCAL_RUNNERS,
    SUMMARY_FILE,
    build_pipeline,
    exit_code_for,
    metric_counters,
    read_text,
    write_text,
)
from mnist_batch.scoring.sinks import WriteTable

SUCCESS_FILE = "_SUCCESS"
MANIFEST_TABLE = "manifest"
INCREMENTAL_KEYS = ("stat", "hash")
RETRY_STAGES = ("read", "inference")
"""Error stages that may be transient: such files are scored again by the next incremental run."""
SKIP_ALREADY_SCORED = "already scored"
"""``skipped_by_reason`` key of the files an incremental run skipped."""

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}$")
RUN_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime", pa.float64(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
    ]
)
"""One row per image file a run took on (scored or errored); ``sha256`` only with ``--incremental-key hash``."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a production run is placed and which files it takes on.

    Attributes:
      run_date: the ``dt=`` partition, ``YYYY-MM-DD`` (default: today, UTC).
      incremental: skip files an earlier committed run under the same root already took on.
      incremental_key: ``stat`` (path + size + mtime) or ``hash`` (path + sha256 of the content).
      expect_model_id: refuse to run unless the model's id (sha256) starts with this.
    """

    run_date: str | None = None
    incremental: bool = False
    incremental_key: str = "stat"
    expect_model_id: str | None = None

    def __post_init__(self) -> None:
        if self.run_date is not None:
            valid = bool(RUN_DATE_RE.match(self.run_date))
            if valid:
                try:
                    datetime.date.fromisoformat(self.run_date)
                except ValueError:
                    valid = False
            if not valid:
                raise ValueError(f"run_date must be YYYY-MM-DD, got {self.run_date!r}")
        if self.incremental_key not in INCREMENTAL_KEYS:
            raise ValueError(f"incremental_key must be one of {INCREMENTAL_KEYS}, got {self.incremental_key!r}")
        if self.expect_model_id is not None and len(self.expect_model_id) < 8:
            raise ValueError(f"expect_model_id must have at least 8 characters, got {self.expect_model_id!r}")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run folder under a root."""

    dt: str
    run_id: str
    path: str


def default_run_id(now: datetime.datetime | None = None) -> str:
    """A UTC timestamp run id, e.g. ``20261122T215600Z``."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    """Returns ``run_id`` when it is safe as a folder name (letters, digits, ``._+:-``).

    Raises:
      ScoringError: otherwise.
    """
    if not RUN_ID_RE.match(run_id):
        raise ScoringError(f"--run-id {run_id!r}: use letters, digits and ._+:- only (at most 128)")
    return run_id


def run_path(root: str, run_date: str, run_id: str) -> str:
    """``ROOT/dt=DATE/run=ID``."""
    return FileSystems.join(root, f"dt={run_date}", f"run={run_id}")


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def _parse_run_dir(path: str) -> RunInfo | None:
    parts = path.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-1].startswith("run=") or not parts[-2].startswith("dt="):
        return None
    return RunInfo(dt=parts[-2][3:], run_id=parts[-1][4:], path=path.rstrip("/"))


def _match(pattern: str) -> list[str]:
    try:
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # noqa: BLE001 -- Beam raises BeamIOError for a missing root; that is "no runs"
        return []


def committed_runs(root: str) -> list[RunInfo]:
    """Runs under ``root`` that have ``_SUCCESS``, sorted by (dt, run id)."""
    found = [_parse_run_dir(_parent(p)) for p in _match(FileSystems.join(root, "dt=*", "run=*", SUCCESS_FILE))]
    return sorted((r for r in found if r is not None), key=lambda r: (r.dt, r.run_id))


def run_files(root: str, run_id: str) -> list[str]:
    """Every file of every folder of ``run_id`` under ``root`` (any ``dt=``), committed or not."""
    return _match(FileSystems.join(root, "dt=*", f"run={run_id}", "**"))


def delete_run(root: str, run_id: str) -> int:
    """Deletes every folder of ``run_id`` under ``root``: its ``_SUCCESS`` markers first, then the folders.

    Returns the number of files that were there.
    """
    files = run_files(root, run_id)
    markers = [f for f in files if f.rsplit("/", 1)[-1] == SUCCESS_FILE]
    if markers:
        FileSystems.delete(markers)
    rest = [f for f in files if f not in markers]
    if rest:
        FileSystems.delete(rest)
    for run_dir in sorted({d for d in (_run_dir_of(f) for f in files) if d}):
        if "://" not in run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)  # the empty local folders (object stores have none)
    return len(files)


def _run_dir_of(path: str) -> str | None:
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].startswith("run=") and parts[i - 1].startswith("dt="):
            return "/".join(parts[: i + 1])
    return None


def read_parquet_files(pattern: str, columns: list[str] | None = None) -> pa.Table | None:
    """All Parquet files matching ``pattern`` (any Beam filesystem) as one table; None if none match."""
    tables = []
    for path in sorted(_match(pattern)):
        if not path.endswith(".parquet"):
            continue
        with FileSystems.open(path) as f:
            tables.append(pq.read_table(io.BytesIO(f.read()), columns=columns))
    return pa.concat_tables(tables) if tables else None


def read_runs(root: str, table: str, runs: Iterable[RunInfo] | None = None) -> pa.Table:
    """One table of ``table`` over the committed runs under a local ``root``, with ``dt`` and ``run`` columns.

    Uncommitted runs (no ``_SUCCESS``: running, killed, failed) are left out. For object stores,
    point DuckDB or Spark at the committed run folders the same way.
    """
    import pyarrow.dataset as pads

    runs = committed_runs(root) if runs is None else list(runs)
    files = [p for r in runs for p in _match(FileSystems.join(r.path, table, "*.parquet"))]
    partitioning = pads.partitioning(pa.schema([("dt", pa.string()), ("run", pa.string())]), flavor="hive")
    return pads.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=root).to_table()


def known_files(root: str, key: str, exclude_run_id: str | None = None) -> frozenset[tuple]:
    """Keys of the files that committed runs under ``root`` took on, minus transient errors.

    Args:
      root: the runs root.
      key: ``stat`` -> ``(path, size, mtime)``; ``hash`` -> ``(path, sha256)``.
      exclude_run_id: the run being (re)run: its own earlier output never counts.
    """
    known: set[tuple] = set()
    for run in committed_runs(root):
        if run.run_id == exclude_run_id:
            continue
        manifest = read_parquet_files(FileSystems.join(run.path, MANIFEST_TABLE, "*"))
        if manifest is None:
            continue
        errors = read_parquet_files(FileSystems.join(run.path, "errors", "*"), columns=[COL_PATH, COL_STAGE])
        retry = set()
        if errors is not None:
            retry = {p for p, s in zip(*errors.to_pydict().values(), strict=True) if s in RETRY_STAGES}
        rows = manifest.to_pydict()
        for path, size, mtime, sha in zip(rows[COL_PATH], rows["size"], rows["mtime"], rows["sha256"], strict=True):
            if path in retry:
                continue
            if key == "stat":
                known.add((path, int(size), float(mtime)))
            elif sha is not None:
                known.add((path, sha))
    return frozenset(known)


class SelectNewFilesFn(beam.DoFn):
    """ReadableFile -> main: the file; ``manifest``: its manifest row; ``skipped``: (path, reason).

    A file whose key is in ``known`` goes to ``skipped`` (reason :data:`SKIP_ALREADY_SCORED`);
    every other file is passed on and recorded in the manifest.
    """

    MANIFEST_TAG = "manifest"

    def __init__(self, run_id: str, key: str, known: frozenset[tuple]) -> None:
        self._run_id = run_id
        self._key = key
        self._known = known
        self._already = Metrics.counter(METRICS_NAMESPACE, "files_already_scored")

    def process(self, readable) -> Iterator[Any]:
        meta = readable.metadata
        sha = None
        if self._key == "hash":
            try:
                data = read_bytes(readable)
            except Exception:  # noqa: BLE001 -- unreadable: not skipped; the decode step records the error
                sha = None
            else:
                sha = hashlib.sha256(data).hexdigest()
                readable = LoadedFile(meta, data)  # decoding reuses these bytes, no second read
            key = (meta.path, sha)
        else:
            key = (meta.path, int(meta.size_in_bytes), float(meta.last_updated_in_seconds))
        if key in self._known:
            self._already.inc()
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, (meta.path, SKIP_ALREADY_SCORED))
            return
        yield beam.pvalue.TaggedOutput(
            self.MANIFEST_TAG,
            {
                COL_PATH: meta.path,
                "size": int(meta.size_in_bytes),
                "mtime": float(meta.last_updated_in_seconds),
                "sha256": sha,
                COL_RUN_ID: self._run_id,
            },
        )
        yield readable


class SelectFiles(beam.PTransform):
    """``{"images", "skipped"}`` -> the same, without files scored before; writes the run's manifest."""

    def __init__(self, run_dir: str, run_id: str, key: str = "stat", known: frozenset[tuple] = frozenset()) -> None:
        super().__init__()
        self._run_dir = run_dir
        self._fn = SelectNewFilesFn(run_id, key, known)
        self.manifest_written: beam.PCollection | None = None
        """After expansion: the manifest's finalised file names (the commit waits on them)."""

    def expand(self, files):
        tag = SelectNewFilesFn.MANIFEST_TAG
        selected = files["images"] | "DropScoredBefore" >> beam.ParDo(self._fn).with_outputs(
            SKIPPED_TAG, tag, main="images"
        )
        self.manifest_written = selected[tag] | "WriteManifest" >> WriteToParquet(
            FileSystems.join(self._run_dir, MANIFEST_TABLE, "part"),
            schema=MANIFEST_SCHEMA,
            codec="snappy",
            file_name_suffix=".parquet",
        )
        skipped = (files["skipped"], selected[SKIPPED_TAG]) | "MergeSkipped" >> beam.Flatten()
        return {"images": selected.images, "skipped": skipped}


class CommitRunFn(beam.DoFn):
    """Stats -> ``summary.json`` then ``_SUCCESS`` in the run folder: the run's commit, inside the pipeline.

    Its side inputs are the file names the Parquet sinks emit after finalising their shards, so
    it runs only once every table is complete; committing on a worker means a launcher that
    does not wait (Dataflow flex templates, detached launches) still gets committed runs.
    """

    def __init__(self, run_dir: str, launch: dict[str, Any], max_error_rate: float | None) -> None:
        self._run_dir = run_dir
        self._launch = launch
        self._max_error_rate = max_error_rate

    def process(self, stats: dict[str, Any], *finalised_files) -> Iterator[str]:
        summary = commit_summary(stats, self._launch, self._max_error_rate)
        summary["committed_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        summary["files_written"] = sum(len(files) for files in finalised_files)
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        write_text(FileSystems.join(self._run_dir, SUMMARY_FILE), text)
        write_text(FileSystems.join(self._run_dir, SUCCESS_FILE), text)
        yield self._run_dir


def commit_summary(stats: dict[str, Any], launch: dict[str, Any], max_error_rate: float | None) -> dict[str, Any]:
    """The run's summary from the pipeline's stats and what the launcher knew; sets exit_code/failure."""
    summary = {**stats, **launch}
    skipped = int(summary.get("skipped_by_reason", {}).get(SKIP_ALREADY_SCORED, 0))
    summary["incremental"] = {**launch["incremental"], "skipped": skipped}
    code, reason = exit_code_for(summary, max_error_rate)
    if code != 0 and launch["incremental"]["enabled"] and summary["counts"]["matched"] == 0 and skipped > 0:
        code, reason = 0, None  # nothing new since the last run is a normal night, not a failure
    summary["exit_code"], summary["failure"] = code, reason
    return summary


def run_partitioned(
    config: ScoreConfig, options: RunOptions, beam_args: list[str] | None = None, *, wait: bool = True
) -> dict[str, Any]:
    """Scores into ``config.output/dt=DATE/run=ID/``, committed with ``_SUCCESS``; returns the summary.

    Steps: check the model (and ``expect_model_id``); read the keys of earlier committed runs
    (``incremental``); delete every earlier folder of this run id; run the pipeline: tables and
    manifest, then :class:`CommitRunFn` writes ``summary.json`` and ``_SUCCESS`` once every sink
    has finalised. A failure anywhere before leaves no ``_SUCCESS``. With ``wait`` the launcher
    then adds wall time and Beam counters to both files; without it, it returns once the job is
    submitted (``{"state": "submitted", ...}``).
    """
    beam_options = PipelineOptions(beam_args or [])
    runner = beam_options.view_as(StandardOptions).runner or "DirectRunner"
    root = config.output
    run_id = check_run_id(config.run_id or default_run_id())
    run_date = options.run_date or datetime.datetime.now(datetime.UTC).date().isoformat()
    card = check_model(config.model, options.expect_model_id)
    known = known_files(root, options.incremental_key, exclude_run_id=run_id) if options.incremental else frozenset()
    out = run_path(root, run_date, run_id)
    if config.progress is False and runner in LOCAL_RUNNERS:
        config = dataclasses.replace(config, progress=True)
    config = dataclasses.replace(config, output=out, run_id=run_id, overwrite=True)
    launch = {
        "model": config.model,
        "model_id": card.model_id,
        "model_name": card.model_name,
        "class_names": list(card.class_names),
        "run_id": run_id,
        "runner": runner,
        "inputs": list(config.inputs),
        "output": out,
        "review_threshold": config.review_threshold,
        "max_error_rate": config.max_error_rate,
        "layout": "runs",
        "root": root,
        "dt": run_date,
        "run_path": out,
        "expect_model_id": options.expect_model_id,
        "incremental": {"enabled": options.incremental, "key": options.incremental_key, "known_files": len(known)},
    }
    start = time.monotonic()
    p = beam.Pipeline(options=beam_options)
    select = SelectFiles(out, run_id, options.incremental_key, known)
    outputs = build_pipeline(p, config, card=card, select_files=select)
    delete_run(root, run_id)  # everything checked: only now replace an earlier attempt of this run
    written = [
        getattr(outputs, table) | f"Write{table.title().replace('_', '')}" >> WriteTable(out, table)
        for table in ("predictions", "errors", "confusion", "per_class")
    ]
    written.append(select.manifest_written)
    side_inputs = [beam.pvalue.AsList(w) for w in written]
    outputs.stats | "CommitRun" >> beam.ParDo(CommitRunFn(out, launch, config.max_error_rate), *side_inputs)
    result = p.run()
    if not wait:
        return {**launch, "state": "submitted", "exit_code": 0, "failure": None}
    result.wait_until_finish()
    wall = time.monotonic() - start
    summary = read_success(out)
    if summary is None:
        raise ScoringError(f"run {run_id}: the pipeline finished but {out}/{SUCCESS_FILE} is missing")
    matched = summary["counts"]["matched"]
    summary.update(
        {
            "wall_time_s": round(wall, 3),
            "images_per_s": round(matched / wall, 1) if wall > 0 else None,
            "metrics": metric_counters(result),
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
    )
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    write_text(FileSystems.join(out, SUMMARY_FILE), text)
    write_text(FileSystems.join(out, SUCCESS_FILE), text)
    return summary


def read_success(run_dir: str) -> dict[str, Any] | None:
    """The summary held by a run's ``_SUCCESS``, or None when the run is not committed."""
    uri = FileSystems.join(run_dir, SUCCESS_FILE)
    if not FileSystems.exists(uri):
        return None
    return json.loads(read_text(uri))
