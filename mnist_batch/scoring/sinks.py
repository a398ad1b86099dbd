"""The output tables: each pyarrow schema declared once, here, and written with ``WriteToParquet``.

Layout under ``--output OUT`` (each folder is one Parquet data set, any number of shards)::

    OUT/predictions/part-SSSSS-of-NNNNN.parquet   PREDICTIONS_SCHEMA
    OUT/errors/part-...parquet                    ERRORS_SCHEMA
    OUT/confusion/part-...parquet                 CONFUSION_SCHEMA
    OUT/per_class/part-...parquet                 PER_CLASS_SCHEMA
    OUT/summary.json                              written by the launcher after the run
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet, WriteToParquetBatched

from mnist_batch.constants import (
    COL_BLANK,
    COL_CONFIDENCE,
    COL_ERROR_TYPE,
    COL_LOW_CONFIDENCE,
    COL_MESSAGE,
    COL_MODEL_ID,
    COL_PATH,
    COL_PREDICTED_LABEL,
    COL_PROBABILITIES,
    COL_RUN_ID,
    COL_SCORED_AT,
    COL_STAGE,
    COL_TRUE_LABEL,
)

COL_PREDICTED_CLASS = "predicted_class"
COL_TRUE_CLASS = "true_class"

ERROR_STAGES = ("read", "decode", "preprocess", "inference")
"""Values of ``errors.stage``."""

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field(COL_TRUE_LABEL, pa.int32()),
        pa.field(COL_TRUE_CLASS, pa.string()),
        pa.field(COL_PREDICTED_LABEL, pa.int32(), nullable=False),
        pa.field(COL_PREDICTED_CLASS, pa.string(), nullable=False),
        pa.field(COL_CONFIDENCE, pa.float32(), nullable=False),
        pa.field(COL_PROBABILITIES, pa.list_(pa.float32()), nullable=False),
        pa.field(COL_LOW_CONFIDENCE, pa.bool_(), nullable=False),
        pa.field(COL_BLANK, pa.bool_(), nullable=False),
        pa.field(COL_MODEL_ID, pa.string(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
        pa.field(COL_SCORED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""One row per scored image. ``true_label``/``true_class`` are null when no label is known."""

ERRORS_SCHEMA = pa.schema(
    [
        pa.field(COL_PATH, pa.string(), nullable=False),
        pa.field(COL_STAGE, pa.string(), nullable=False),
        pa.field(COL_ERROR_TYPE, pa.string(), nullable=False),
        pa.field(COL_MESSAGE, pa.string(), nullable=False),
        pa.field(COL_RUN_ID, pa.string(), nullable=False),
    ]
)
"""One row per matched image file that could not be scored; ``stage`` is one of ERROR_STAGES."""

CONFUSION_SCHEMA = pa.schema(
    [
        pa.field(COL_TRUE_LABEL, pa.int32(), nullable=False),
        pa.field(COL_PREDICTED_LABEL, pa.int32(), nullable=False),
        pa.field(COL_TRUE_CLASS, pa.string(), nullable=False),
        pa.field(COL_PREDICTED_CLASS, pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
"""Every class x class cell, zeros included; only predictions with a true label count."""

PER_CLASS_SCHEMA = pa.schema(
    [
        pa.field("label", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("support", pa.int64(), nullable=False),
        pa.field("precision", pa.float64(), nullable=False),
        pa.field("recall", pa.float64(), nullable=False),
        pa.field("f1", pa.float64(), nullable=False),
    ]
)
"""Per-class statistics from the confusion matrix (zero_division = 0)."""

TABLES = {
    "predictions": PREDICTIONS_SCHEMA,
    "errors": ERRORS_SCHEMA,
    "confusion": CONFUSION_SCHEMA,
    "per_class": PER_CLASS_SCHEMA,
}
"""Output folder name -> schema."""

TABLE_CHUNKS = frozenset({"predictions"})
"""Tables whose PCollection holds ``pyarrow.Table`` chunks (written with ``WriteToParquetBatched``);
the others hold one dict per row (errors are per file; confusion and per_class are small)."""


def table_prefix(output: str, table: str) -> str:
    return FileSystems.join(output, table, "part")


class WriteTable(beam.PTransform):
    """Writes ``OUT/<table>/part-*.parquet`` with that table's schema (snappy).

    The input is ``pyarrow.Table`` chunks for the tables in :data:`TABLE_CHUNKS`, dict rows for
    the others.
    """

    def __init__(self, output: str, table: str, *, num_shards: int = 0) -> None:
        super().__init__()
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
        self._output = output
        self._table = table
        self._num_shards = num_shards

    def expand(self, rows):
        write = WriteToParquetBatched if self._table in TABLE_CHUNKS else WriteToParquet
        return rows | "WriteParquet" >> write(
            table_prefix(self._output, self._table),
            schema=TABLES[self._table],
            codec="snappy",
            file_name_suffix=".parquet",
            num_shards=self._num_shards,
        )
