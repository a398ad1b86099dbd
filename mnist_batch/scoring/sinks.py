"""Parquet shards of the output tables, written into a staging folder and named for the commit.

Beam's own file sinks (``WriteToParquet``) match their output paths as glob patterns when they
finalise, so an output folder named ``prod[1]`` fails there; and their finalise step is a
second rename on top of the run's commit. :class:`WriteTable` writes one shard per bundle
straight into the run's staging folder and emits the shard's path; the run's commit
(:mod:`mnist_batch.scoring.commit`) moves exactly the emitted shards into the table. A bundle
that failed and was retried leaves an orphan shard behind that no one emitted: it is deleted
with the staging folder, never moved into a table.

Schemas, table and folder names: :mod:`mnist_batch.tables`.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from mnist_batch.scoring import fs
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

CODEC = "snappy"
ROWS_PER_GROUP = 4096


def new_shard_path(folder: str) -> str:
    """A fresh shard name in ``folder``: ``part-<uuid>.parquet`` (unique across workers and retries)."""
    return fs.join(folder, f"part-{uuid.uuid4().hex}.parquet")


class ShardWriter:
    """One Parquet file written chunk by chunk (a row group per chunk), on any Beam filesystem."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self._schema = schema
        if fs.is_remote(path):
            self._stream = FileSystems.create(path)
            sink = pa.PythonFile(self._stream, mode="w")
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._stream = None
            sink = path
        self._writer = pq.ParquetWriter(sink, schema, compression=CODEC)

    def write(self, table: pa.Table) -> None:
        if not table.schema.equals(self._schema):
            table = table.select(self._schema.names).cast(self._schema)
        self._writer.write_table(table)

    def close(self) -> str:
        self._writer.close()
        if self._stream is not None:
            self._stream.close()
        return self.path


def read_shards(folder: str, columns: list[str] | None = None) -> list[pa.Table]:
    """Every Parquet shard in ``folder`` (any Beam filesystem; none when it does not exist), as tables."""
    tables = []
    for path in fs.list_files(folder):
        if not path.endswith(".parquet"):
            continue
        if fs.is_remote(path):
            with FileSystems.open(path) as f:
                tables.append(pq.read_table(io.BytesIO(f.read()), columns=columns))
        else:
            # One file, never a dataset: pyarrow < 19 (Beam 2.70's bound) would add the Hive
            # partition columns of its path (dt=, run=) to a single file's table.
            tables.append(pq.ParquetFile(path).read(columns=columns))
    return tables


def write_empty_shard(folder: str, schema: pa.Schema) -> str:
    """An empty shard (schema only), so that a table with no rows still reads with its columns."""
    writer = ShardWriter(new_shard_path(folder), schema)
    writer.write(schema.empty_table())
    return writer.close()


class WriteShardsFn(beam.DoFn):
    """Dict rows or ``pyarrow.Table`` chunks -> one shard per bundle; emits the shard's path.

    Rows are gathered ``ROWS_PER_GROUP`` at a time; tables are written as they come. Memory is
    one row group, whatever the bundle's size.
    """

    def __init__(self, folder: str, schema: pa.Schema) -> None:
        self._folder = folder
        self._schema = schema

    def start_bundle(self) -> None:
        self._writer: ShardWriter | None = None
        self._rows: list[dict[str, Any]] = []

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = ShardWriter(new_shard_path(self._folder), self._schema)
        self._writer.write(table)

    def _flush_rows(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._write(pa.Table.from_pylist(rows, schema=self._schema))

    def process(self, element) -> Iterator[str]:
        if isinstance(element, pa.Table):
            self._flush_rows()
            if element.num_rows:
                self._write(element)
        else:
            self._rows.append(element)
            if len(self._rows) >= ROWS_PER_GROUP:
                self._flush_rows()
        return iter(())

    def finish_bundle(self):
        self._flush_rows()
        if self._writer is not None:
            path = self._writer.close()
            self._writer = None
            yield GlobalWindows.windowed_value(path)


class WriteTable(beam.PTransform):
    """Rows of one table -> Parquet shards in ``STAGING/<table>/``; returns the shards' paths.

    The input is ``pyarrow.Table`` chunks (predictions) or dict rows (the other tables).
    """

    def __init__(self, staging: str, table: str) -> None:
        super().__init__()
        if table not in RUN_TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {', '.join(RUN_TABLES)}")
        self._folder = fs.join(staging, table)
        self._schema = RUN_TABLES[table]

    def expand(self, rows):
        return rows | "WriteShards" >> beam.ParDo(WriteShardsFn(self._folder, self._schema))
