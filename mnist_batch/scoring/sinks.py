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
from mnist_batch.runstore.shards import ShardBuffer
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

    Each bundle's rows go through one :class:`~mnist_batch.runstore.shards.ShardBuffer` (a row group
    per ``ROWS_PER_GROUP`` rows; memory is one row group, whatever the bundle's size).
    """

    def __init__(self, folder: str, schema: pa.Schema, storage_settings: dict[str, Any] | None = None) -> None:
        self._folder = folder
        self._schema = schema
        super().__init__(storage_settings)

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def start_bundle(self) -> None:
        self._buffer = ShardBuffer(self._folder, self._schema)

    def process(self, element) -> Iterator[str]:
        self._buffer.add(element)
        return iter(())

    def finish_bundle(self):
        written = self._buffer.close()
        if written is not None:
            yield GlobalWindows.windowed_value(written)


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
