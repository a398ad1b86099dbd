"""Parquet shards of the run store's tables: named, written chunk by chunk, read back (any Beam filesystem).

A shard is ``part-<uuid>.parquet`` (unique across workers and retries); the Beam step that
writes them per bundle is :class:`mnist_batch.scoring.sinks.WriteTable`.

Every page is written with its CRC-32 (Parquet's page checksum) and :func:`read_shard` verifies
it, so a flipped bit in a page (a disk fault, a bad copy) is an error, not a silently different
value (snappy itself checks nothing); shards written before checksums have none and read as
before.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import storage_step
from mnist_batch.runstore.storage import storage_for

CODEC = "snappy"
ROWS_PER_GROUP = 4096


def new_shard_path(folder: str) -> str:
    """A fresh shard name in ``folder``: ``part-<uuid>.parquet`` (unique across workers and retries)."""
    return fs.join(folder, f"part-{uuid.uuid4().hex}.parquet")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, order and types."""
    return table if table.schema.equals(schema) else table.select(schema.names).cast(schema)


class ShardWriter:
    """One Parquet file written chunk by chunk (a row group per chunk), on any store (its ``open_write``)."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self._schema = schema
        self._stream = storage_for(path).open_write(path)
        sink = pa.PythonFile(self._stream, mode="w")
        self._writer = pq.ParquetWriter(sink, schema, compression=CODEC, write_page_checksum=True)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(conform(table, self._schema))

    def close(self) -> str:
        self._writer.close()
        self._stream.close()
        return self.path


class ShardBuffer:
    """Dict rows or ``pyarrow.Table`` chunks of one table -> one shard in ``folder``, made at the first row.

    Rows and table chunks are gathered ``ROWS_PER_GROUP`` at a time and written as one row group
    (a group of 256 predictions per row group made a million-file shard hold ~3,900 row groups,
    whose metadata the writer keeps until it closes). Memory is one row group, whatever the number
    of rows. A store that fails under a shard is one line naming the step (nothing was committed).
    The Beam step (:class:`~mnist_batch.scoring.sinks.WriteShardsFn`) keeps one per bundle; the
    in-process job one per table.
    """

    def __init__(self, folder: str, schema: pa.Schema) -> None:
        self._folder = folder
        self._schema = schema
        self._writer: ShardWriter | None = None
        self._rows: list[dict[str, Any]] = []
        self._chunks: list[pa.Table] = []
        self._chunk_rows = 0
        self._written = 0

    def _step(self):
        return storage_step(f"writing shards into {self._folder}", before_commit=True)

    def _write(self, table: pa.Table) -> None:
        with self._step():
            if self._writer is None:
                self._writer = ShardWriter(new_shard_path(self._folder), self._schema)
            self._writer.write(table)
        self._written += table.num_rows

    def _flush_rows(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._write(pa.Table.from_pylist(rows, schema=self._schema))

    def _flush_chunks(self) -> None:
        if self._chunks:
            chunks, self._chunks, self._chunk_rows = self._chunks, [], 0
            self._write(pa.concat_tables([conform(c, self._schema) for c in chunks]).combine_chunks())

    def add(self, element: dict[str, Any] | pa.Table) -> None:
        """One dict row, or a table chunk of rows."""
        if isinstance(element, pa.Table):
            self._flush_rows()
            if element.num_rows:
                self._chunks.append(element)
                self._chunk_rows += element.num_rows
                if self._chunk_rows >= ROWS_PER_GROUP:
                    self._flush_chunks()
        else:
            self._flush_chunks()
            self._rows.append(element)
            if len(self._rows) >= ROWS_PER_GROUP:
                self._flush_rows()

    def close(self) -> tuple[str, int] | None:
        """Writes what is left and closes the shard: ``(path, rows written)``, None when no row came."""
        self._flush_chunks()
        self._flush_rows()
        if self._writer is None:
            return None
        with self._step():
            path = self._writer.close()
        self._writer, written, self._written = None, self._written, 0
        return path, written


def shard_paths(folder: str) -> list[str]:
    """The Parquet shards in ``folder`` (any Beam filesystem; none when it does not exist)."""
    return [p for p in fs.list_files(folder) if p.endswith(".parquet")]


def read_shard(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet shard (any store), as a table; a column in ``columns`` that the shard lacks
    (written before the column existed) is left out, on every store alike."""
    store = storage_for(path)
    # One file, never a dataset: pyarrow < 19 (Beam 2.70's bound) would add the Hive
    # partition columns of its path (dt=, run=) to a single file's table.
    source = store.local_file(path) or io.BytesIO(store.read_bytes(path))
    return pq.ParquetFile(source, page_checksum_verification=True).read(columns=columns)


def shard_rows(path: str) -> int:
    """The row count in a shard's footer (raises when the footer cannot be read: truncated, not Parquet).

    Only the footer is fetched (:func:`footer`: one ranged ``GET`` on S3; a stream that cannot seek
    is read whole); a local shard is opened by pyarrow.
    """
    local = storage_for(path).local_file(path)
    if local is not None:
        with pq.ParquetFile(local) as f:
            return f.metadata.num_rows
    return pq.ParquetFile(io.BytesIO(footer(path))).metadata.num_rows


FOOTER_GUESS = 64 * 1024
"""Bytes fetched from a shard's end to find its footer: a 4,096-row group's footer is a few KiB."""
MAGIC = b"PAR1"


def footer(path: str) -> bytes:
    """``PAR1`` + the footer of a shard (its metadata, length and closing ``PAR1``): what pyarrow
    needs to read the metadata, from one ranged ``GET`` of its last 64 KiB (two when the footer is
    longer), not the whole shard. A shard that does not end with a footer comes back as it ends, and
    pyarrow refuses it as it would the whole file."""
    store = storage_for(path)
    tail, whole = store.read_tail(path, FOOTER_GUESS)
    if len(tail) >= 8 and tail[-4:] == MAGIC:
        need = int.from_bytes(tail[-8:-4], "little") + 8
        if len(tail) < need <= whole:
            tail, whole = store.read_tail(path, need)
        if need <= len(tail):
            return MAGIC + tail[-need:]
    return tail


class FinishedRows:
    """Rows in the finished shards of a folder, each shard's footer read once, when it is finished.

    A shard still being written has no footer yet (locally) or no object yet (object stores),
    so it is counted on a later call. Shards of a failed bundle attempt count too until the
    runner retries that bundle: the count is what the workers have written, not yet committed.
    """

    def __init__(self, folders: list[str]) -> None:
        self.folders = folders
        self._rows: dict[str, int] = {}

    def count(self) -> int:
        for folder in self.folders:
            for path in shard_paths(folder):
                if path not in self._rows:
                    try:
                        self._rows[path] = shard_rows(path)
                    except Exception:  # noqa: BLE001 - not finished yet (or gone with a retry): later
                        continue
        return sum(self._rows.values())


def read_shards(folder: str, columns: list[str] | None = None) -> list[pa.Table]:
    """Every Parquet shard in ``folder`` (any Beam filesystem; none when it does not exist), as tables."""
    return [read_shard(path, columns) for path in shard_paths(folder)]


def write_empty_shard(folder: str, schema: pa.Schema) -> str:
    """An empty shard (schema only), so that a table with no rows still reads with its columns."""
    writer = ShardWriter(new_shard_path(folder), schema)
    writer.write(schema.empty_table())
    return writer.close()
