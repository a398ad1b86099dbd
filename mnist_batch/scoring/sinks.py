"""Parquet shards of the output tables, written into a staging folder and named for the commit.

Beam's own file sinks (``WriteToParquet``) match their output paths as glob patterns when they
finalise, so an output folder named ``prod[1]`` fails there; and their finalise step is a
second rename on top of the run's commit. :class:`WriteTable` writes one shard per bundle
straight into the run's staging folder and emits the shard's path with the number of rows it
wrote; the run's commit (:mod:`mnist_batch.runstore.commit`) re-opens each emitted shard, checks
that count against its footer, and moves exactly the emitted shards into the table. A bundle
that failed and was retried leaves an orphan shard behind that no one emitted: it is deleted
with the staging folder, never moved into a table.

Schemas, table and folder names: :mod:`mnist_batch.tables`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import storage_step
from mnist_batch.runstore.shards import ROWS_PER_GROUP, ShardWriter, conform, new_shard_path
from mnist_batch.scoring.storage_fn import StorageDoFn, storage_settings
from mnist_batch.tables import (  # noqa: F401 -- re-exported: the scoring side's view of the contract
    COL_PREDICTED_CLASS,
    COL_TRUE_CLASS,
    CONFUSION_SCHEMA,
    ERROR_STAGES,
    ERRORS_SCHEMA,
    MANIFEST_SCHEMA,
    PER_CLASS_SCHEMA,
    PREDICTIONS_SCHEMA,
    RUN_TABLES,
    TABLES,
)


class WriteShardsFn(StorageDoFn):
    """Dict rows or ``pyarrow.Table`` chunks -> one shard per bundle; emits ``(path, rows written)``.

    Rows and table chunks are gathered ``ROWS_PER_GROUP`` at a time and written as one row group
    (a group of 256 predictions per row group made a million-file shard hold ~3,900 row groups,
    whose metadata the writer keeps until it closes). Memory is one row group, whatever the
    bundle's size.
    """

    def __init__(self, folder: str, schema: pa.Schema, storage_settings: dict[str, Any] | None = None) -> None:
        self._folder = folder
        self._schema = schema
        super().__init__(storage_settings)

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def start_bundle(self) -> None:
        self._writer: ShardWriter | None = None
        self._rows: list[dict[str, Any]] = []
        self._chunks: list[pa.Table] = []
        self._chunk_rows = 0
        self._written = 0

    def _write(self, table: pa.Table) -> None:
        with self._step():
            if self._writer is None:
                self._writer = ShardWriter(new_shard_path(self._folder), self._schema)
            self._writer.write(table)
        self._written += table.num_rows

    def _step(self):
        """A store that fails under a shard: one line naming the step (nothing was committed)."""
        return storage_step(f"writing shards into {self._folder}", before_commit=True)

    def _flush_rows(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._write(pa.Table.from_pylist(rows, schema=self._schema))

    def _flush_chunks(self) -> None:
        if self._chunks:
            chunks, self._chunks, self._chunk_rows = self._chunks, [], 0
            self._write(pa.concat_tables([conform(c, self._schema) for c in chunks]).combine_chunks())

    def process(self, element) -> Iterator[str]:
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
        return iter(())

    def finish_bundle(self):
        self._flush_chunks()
        self._flush_rows()
        if self._writer is not None:
            with self._step():
                path = self._writer.close()
            self._writer, written, self._written = None, self._written, 0
            yield GlobalWindows.windowed_value((path, written))


class WriteTable(beam.PTransform):
    """Rows of one table -> Parquet shards in ``STAGING/<table>/``; returns ``(path, rows)`` per shard.

    The input is ``pyarrow.Table`` chunks (predictions) or dict rows (the other tables).
    """

    def __init__(self, staging: str, table: str) -> None:
        super().__init__()
        if table not in RUN_TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {', '.join(RUN_TABLES)}")
        self._folder = fs.join(staging, table)
        self._schema = RUN_TABLES[table]

    def expand(self, rows):
        settings = storage_settings(rows)
        return rows | "WriteShards" >> beam.ParDo(WriteShardsFn(self._folder, self._schema, settings))
