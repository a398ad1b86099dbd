"""``mnist-batch runs verify``: every committed run's shards re-opened and checked; bad runs quarantined.

A committed run is sound when every shard of each of its tables reads back whole (footer, and every
column of every page decoded, each page's checksum verified where it has one), its
``predictions`` and ``errors`` row counts equal the summary's ``counts.scored`` and
``counts.errors``, and its manifest keys (the files it took on) are exactly the paths of its
predictions and errors. A disk fault or a partial copy breaks that silently: readers then fail on
the whole table and incremental runs would trust a history they cannot read.

:func:`quarantine` moves a bad run out of readers' view, whole, to
``ROOT/_quarantine/dt=D/run=ID/{<table>/,_runs/}`` (readers skip ``_`` paths; its marker leaves
first), from where it can be inspected or deleted; the files it took on are scored again by the
next incremental run.
"""

from __future__ import annotations

import collections
import dataclasses
import json

from mnist_batch.constants import COL_PATH
from mnist_batch.runstore import fs
from mnist_batch.runstore.history import RunInfo, committed_runs
from mnist_batch.runstore.shards import read_shard, shard_paths, shard_rows
from mnist_batch.tables import (
    MANIFEST_TABLE,
    QUARANTINE_DIR,
    RUN_TABLES,
    RUNS_DIR,
    SUCCESS_FILE,
    SUMMARY_FILE,
    partition_parts,
)

COUNTED = {"predictions": "scored", "errors": "errors"}
"""Tables whose row count the summary records, and under which ``counts`` key."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a committed run: the shard (or folder, or file) and what."""

    run: RunInfo
    path: str
    what: str

    def line(self) -> str:
        return f"dt={self.run.dt} run={self.run.run_id}: {self.path}: {self.what}"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def verify_run(run: RunInfo) -> list[Problem]:
    """The problems of one committed run (none when it is sound)."""
    problems: list[Problem] = []
    summary_uri = fs.join(run.meta_dir, SUMMARY_FILE)
    try:
        counts = json.loads(fs.read_text(summary_uri)).get("counts", {})
    except Exception as exc:  # noqa: BLE001 -- missing, truncated, not JSON: all one problem
        problems.append(Problem(run, summary_uri, f"summary unreadable ({one_line(exc)})"))
        counts = None
    rows: dict[str, int] = {}
    paths: dict[str, collections.Counter] = {}
    for table in RUN_TABLES:
        shards = shard_paths(run.table_dir(table))
        if not shards:
            problems.append(Problem(run, run.table_dir(table), "no shards (the table's partition is missing)"))
            continue
        total, keys, sound = 0, collections.Counter(), True
        for shard in shards:
            try:
                total += shard_rows(shard)
                decoded = read_shard(shard)  # every column, every page: a flipped bit anywhere is found
                if table in (*COUNTED, MANIFEST_TABLE):
                    keys.update(decoded.column(COL_PATH).to_pylist())
            except Exception as exc:  # noqa: BLE001 -- truncated, not Parquet, unreadable: the shard is bad
                problems.append(Problem(run, shard, f"unreadable shard ({one_line(exc)})"))
                sound = False
        if sound:
            rows[table], paths[table] = total, keys
    for table, key in COUNTED.items():
        if counts is not None and table in rows and rows[table] != counts.get(key):
            what = f"{rows[table]:,} rows, the summary's counts.{key} is {counts.get(key)}"
            problems.append(Problem(run, run.table_dir(table), what))
    if all(t in paths for t in (*COUNTED, MANIFEST_TABLE)):
        taken = paths["predictions"] + paths["errors"]
        only_manifest, not_in_manifest = paths[MANIFEST_TABLE] - taken, taken - paths[MANIFEST_TABLE]
        if only_manifest or not_in_manifest:
            what = (
                f"manifest keys differ from predictions + errors paths: {sum(only_manifest.values())} only in the "
                f"manifest, {sum(not_in_manifest.values())} not in it"
            )
            problems.append(Problem(run, run.table_dir(MANIFEST_TABLE), what))
    return problems


def verify(root: str) -> tuple[list[RunInfo], list[Problem]]:
    """Every committed run under ``root`` checked: ``(runs, problems)``."""
    found = committed_runs(root)
    return found, [p for run in found for p in verify_run(run)]


def quarantine_dir(run: RunInfo) -> str:
    return fs.join(run.root, QUARANTINE_DIR, *partition_parts(run.dt, run.run_id))


def move_tree(src: str, dst: str) -> None:
    """``src`` (a folder) to ``dst``: one rename locally, file by file on object stores."""
    if not fs.exists(src) and not fs.list_files(src):
        return
    if not fs.is_remote(src):
        fs.rename(src, dst)
        fs.remove_empty_dir(fs.parent(src))  # an emptied dt= folder
        return
    prefix = src.rstrip("/") + "/"
    for path in fs.list_files(src):
        fs.rename(path, fs.join(dst, path[len(prefix) :]))


def quarantine(run: RunInfo) -> str:
    """Moves ``run`` out of readers' view (its marker first); returns where it went."""
    dest = quarantine_dir(run)
    if fs.is_remote(run.root):  # file by file: the marker first, so the run is uncommitted at once
        fs.rename(fs.join(run.meta_dir, SUCCESS_FILE), fs.join(dest, RUNS_DIR, SUCCESS_FILE))
    move_tree(run.meta_dir, fs.join(dest, RUNS_DIR))  # locally one rename, the marker with it
    for table in RUN_TABLES:
        move_tree(run.table_dir(table), fs.join(dest, table))
    return dest
