"""A runs root (``score --layout runs``, layout v2) as tables: read committed runs, clean up after crashes.

Layout (names in :mod:`mnist_batch.tables`)::

    ROOT/_mnist_batch_layout.json                     {"format": "mnist_batch.runs", "layout_version": 2}
    ROOT/<table>/dt=YYYY-MM-DD/run=ID/part-*.parquet  predictions, errors, confusion, per_class, manifest
    ROOT/_runs/dt=YYYY-MM-DD/run=ID/summary.json      the run's summary
    ROOT/_runs/dt=YYYY-MM-DD/run=ID/_SUCCESS          written last: the run is committed
    ROOT/_staging/, ROOT/_claims/                     shards before their commit; leases of live launches

Every table folder is an ordinary Hive-partitioned Parquet data set that holds committed runs
only (shards reach it at commit time), so ``pyarrow.dataset``, pandas, DuckDB, Polars and Spark
read ``ROOT/predictions`` with their usual one-liners (deploy/README.md). :func:`read_runs` is
this package's reader: it lists the committed runs from their markers and reads only those.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from mnist_batch.runstore import claims
from mnist_batch.runstore.commit import recover
from mnist_batch.runstore.history import RunInfo, committed_runs
from mnist_batch.runstore.shards import read_shards
from mnist_batch.tables import PARTITION_SCHEMA, RUN_TABLES

__all__ = ["RunInfo", "clean", "committed_runs", "read_run_table", "read_runs"]


def read_run_table(run: RunInfo, table: str) -> pa.Table:
    """One committed run's ``table`` (every shard), without partition columns."""
    pieces = read_shards(run.table_dir(table))
    schema = RUN_TABLES[table]
    return pa.concat_tables([conform(p, schema) for p in pieces]) if pieces else schema.empty_table()


def conform(piece: pa.Table, schema: pa.Schema) -> pa.Table:
    """A shard's table in ``schema``; a nullable column it lacks (added since it was written) as nulls."""
    for field in schema:
        if field.name not in piece.column_names and field.nullable:
            piece = piece.append_column(field, pa.nulls(piece.num_rows, field.type))
    return piece.select(schema.names).cast(schema)


def read_runs(root: str, table: str, runs: Iterable[RunInfo] | None = None) -> pa.Table:
    """``table`` over the committed runs under ``root`` (local or any Beam filesystem), with ``dt`` (a date)
    and ``run`` (a string) as in :data:`~mnist_batch.tables.PARTITION_SCHEMA`.

    Uncommitted runs (running, killed, failed) are never read: only runs with a marker are listed.
    """
    if table not in RUN_TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(RUN_TABLES)}")
    runs = committed_runs(root) if runs is None else list(runs)
    pieces = []
    for run in runs:
        t = read_run_table(run, table)
        t = t.append_column("dt", pa.array([datetime.date.fromisoformat(run.dt)] * t.num_rows, pa.date32()))
        pieces.append(t.append_column("run", pa.array([run.run_id] * t.num_rows, pa.string())))
    if not pieces:
        schema = RUN_TABLES[table]
        for field in PARTITION_SCHEMA:
            schema = schema.append(field)
        return schema.empty_table()
    return pa.concat_tables(pieces)


def clean(root: str) -> dict[str, Any]:
    """Completes commits cut short, deletes the staging of dead launches and their stale leases.

    Live launches (a lease whose owner still runs) are left alone, so this is safe at any time.
    Returns ``{"completed": [...], "deleted": [...], "stale_leases": [...]}``.
    """
    result = recover(root, claims.live_attempts(root))
    return {**result, "stale_leases": claims.remove_stale_leases(root)}
