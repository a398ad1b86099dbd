"""The run store's history: its committed runs, and the key digests of the files each took on.

``--incremental`` skips matched files that an earlier committed run under the same root
already took on (key ``stat`` = path, size, mtime; ``hash`` = path, sha256 of the content);
files whose error was transient (``read`` or ``inference`` stage) are taken on again.
A file's key is kept as a 16-byte digest (BLAKE2b-128); two different keys share a digest
with probability ~n²/2¹²⁹ (1e-27 at a million files). The Beam steps that read these digests
inside the job are in :mod:`mnist_batch.scoring.incremental`.
"""

from __future__ import annotations

import dataclasses
import hashlib

from mnist_batch.constants import COL_PATH, COL_STAGE
from mnist_batch.runstore import fs
from mnist_batch.runstore.layout import run_meta_dir, runs_index
from mnist_batch.runstore.shards import read_shards
from mnist_batch.tables import MANIFEST_TABLE, SUCCESS_FILE

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
        return fs.join(self.root, table, f"dt={self.dt}", f"run={self.run_id}")


def committed_runs(root: str) -> list[RunInfo]:
    """Runs under a runs root that have their ``_SUCCESS`` marker, sorted by (dt, run id)."""
    found = [RunInfo(dt, run_id, root) for (dt, run_id), names in runs_index(root).items() if SUCCESS_FILE in names]
    return sorted(found, key=lambda r: (r.dt, r.run_id))


def key_digest(
    kind: str, path: str, size: int | None = None, mtime: float | None = None, sha: str | None = None
) -> bytes:
    """16-byte digest of a file's incremental key (``stat``: path, size, mtime; ``hash``: path, sha256)."""
    text = f"{path}\0{int(size)}\0{float(mtime)!r}" if kind == "stat" else f"{path}\0{sha}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


def read_columns(folder: str, columns: list[str]) -> dict[str, list]:
    """Columns of every Parquet shard in ``folder`` (any filesystem), as lists."""
    tables = read_shards(folder, columns)
    return {c: [v for t in tables for v in t.column(c).to_pylist()] for c in columns}


def known_digests(run: RunInfo, kind: str) -> bytes:
    """The digests of the files ``run`` took on, minus those whose error may be transient."""
    manifest = read_columns(run.table_dir(MANIFEST_TABLE), [COL_PATH, "size", "mtime", "sha256"])
    errors = read_columns(run.table_dir("errors"), [COL_PATH, COL_STAGE])
    retry = {p for p, s in zip(errors[COL_PATH], errors[COL_STAGE], strict=True) if s in RETRY_STAGES}
    digests = bytearray()
    rows = zip(manifest[COL_PATH], manifest["size"], manifest["mtime"], manifest["sha256"], strict=True)
    for path, size, mtime, sha in rows:
        if path in retry or (kind == "hash" and sha is None):
            continue
        digests += key_digest(kind, path, size, mtime, sha)
    return bytes(digests)
