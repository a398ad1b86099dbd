"""The run store's history: its committed runs, and the key digests of the files each took on.

``--incremental`` skips matched files that an earlier committed run under the same root
already took on (key ``stat`` = path, size, mtime and the manifest's ``version``: a local file's
inode and ctime, an S3 object's ETag, which a replacement that keeps size and mtime still changes; ``hash`` = path,
sha256 of the content);
files whose error was transient (``read`` or ``inference`` stage) are taken on again.
A file's key is kept as a 16-byte digest (BLAKE2b-128); two different keys share a digest
with probability ~n²/2¹²⁹ (1e-27 at a million files). The Beam steps that read these digests
inside the job are in :mod:`mnist_batch.scoring.incremental`.

Runs written before the ``version`` column existed have none: their files' digests are the old
ones (path, size, mtime), and a file is also looked up under that old digest, so a file those
runs scored is matched on the old fields (not rescored after an upgrade) until it changes size or
mtime; from its next run on, its version is recorded and checked too.
"""

from __future__ import annotations

import dataclasses
import hashlib

from mnist_batch.constants import COL_PATH, COL_STAGE
from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.layout import run_meta_dir, runs_index
from mnist_batch.runstore.shards import read_shard, shard_paths, shard_rows
from mnist_batch.tables import MANIFEST_TABLE, RUN_TABLES, SUCCESS_FILE, partition_parts

RETRY_STAGES = ("read", "inference")
"""Error stages that may be transient: such files are scored again by the next incremental run."""
SKIP_ALREADY_SCORED = "already scored"
"""``skipped_by_reason`` key of the files an incremental run skipped."""
DIGEST_BYTES = 16


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One committed run under a runs root."""

    dt: str
    run_id: str
    root: str

    @property
    def meta_dir(self) -> str:
        return run_meta_dir(self.root, self.dt, self.run_id)

    def table_dir(self, table: str) -> str:
        return fs.join(self.root, table, *partition_parts(self.dt, self.run_id))


def committed_runs(root: str) -> list[RunInfo]:
    """Runs under a runs root that have their ``_SUCCESS`` marker, sorted by (dt, run id)."""
    found = [RunInfo(dt, run_id, root) for (dt, run_id), names in runs_index(root).items() if SUCCESS_FILE in names]
    return sorted(found, key=lambda r: (r.dt, r.run_id))


def key_digest(
    kind: str,
    path: str,
    size: int | None = None,
    mtime: float | None = None,
    sha: str | None = None,
    version: str | None = None,
) -> bytes:
    """16-byte digest of a file's incremental key (``stat``: path, size, mtime and, when known, the
    file's ``version``; ``hash``: path, sha256). Without a version, the digest a run before the
    ``version`` column made."""
    if kind == "stat":
        text = f"{path}\0{int(size)}\0{float(mtime)!r}" + (f"\0{version}" if version is not None else "")
    else:
        text = f"{path}\0{sha}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


class HistoryError(RunStoreError):
    """An earlier committed run cannot be read: an incremental run must not trust it."""


def unreadable(run: RunInfo, shard: str, exc: BaseException) -> HistoryError:
    text = str(exc).strip().splitlines()
    return HistoryError(
        f"the incremental history cannot be read: shard {shard} of run {run.run_id} (dt={run.dt}) is damaged "
        f"({type(exc).__name__}: {text[0] if text else ''}); run `mnist-batch runs verify {run.root} --quarantine` "
        f"(its files are then scored again) or rescore that run (--run-id {run.run_id} --replace), then launch again"
    )


def read_columns(folder: str, columns: list[str], run: RunInfo | None = None) -> dict[str, list]:
    """Columns of every Parquet shard in ``folder`` (any filesystem), as lists.

    Raises:
      HistoryError: a shard cannot be read (with ``run``: naming the shard and the way out).
    """
    tables = []
    for shard in shard_paths(folder):
        try:
            tables.append(read_shard(shard, columns))
        except Exception as exc:
            if run is None:
                raise
            raise unreadable(run, shard, exc) from exc
    return {c: [v for t in tables for v in shard_column(t, c)] for c in columns}


def shard_column(table, name: str) -> list:
    """A column's values; all None when the shard was written before the column existed."""
    return column_values(table.column(name)) if name in table.column_names else [None] * table.num_rows


def column_values(column) -> list:
    """A pyarrow column as a Python list, as ``to_pylist()`` gives it, through numpy where that is
    the same values (strings, and numbers without nulls): ~10x faster on a million-row manifest."""
    import pyarrow.types as pat

    kind = column.type
    if (
        pat.is_string(kind)
        or pat.is_large_string(kind)
        or (column.null_count == 0 and (pat.is_integer(kind) or pat.is_floating(kind)))
    ):
        return column.to_numpy(zero_copy_only=False).tolist()
    return column.to_pylist()


def check_readable(run: RunInfo) -> None:
    """Every shard of every table of ``run`` has a readable footer (else :class:`HistoryError`)."""
    for table in RUN_TABLES:
        for shard in shard_paths(run.table_dir(table)):
            try:
                shard_rows(shard)
            except Exception as exc:
                raise unreadable(run, shard, exc) from exc


def known_digests(run: RunInfo, kind: str) -> bytes:
    """The digests of the files ``run`` took on, minus those whose error may be transient.

    Raises:
      HistoryError: a shard of ``run`` cannot be read (a history it cannot read is not trusted).
    """
    check_readable(run)
    manifest = read_columns(run.table_dir(MANIFEST_TABLE), [COL_PATH, "size", "mtime", "sha256", "version"], run)
    errors = read_columns(run.table_dir("errors"), [COL_PATH, COL_STAGE], run)
    retry = {p for p, s in zip(errors[COL_PATH], errors[COL_STAGE], strict=True) if s in RETRY_STAGES}
    digests = bytearray()
    columns = (manifest[c] for c in (COL_PATH, "size", "mtime", "sha256", "version"))
    for path, size, mtime, sha, version in zip(*columns, strict=True):
        if path in retry or (kind == "hash" and sha is None):
            continue
        digests += key_digest(kind, path, size, mtime, sha, version)
    return bytes(digests)
