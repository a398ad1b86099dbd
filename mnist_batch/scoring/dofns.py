"""The pipeline's DoFns. They live in the package so remote workers (``--setup_file``) import them.

Element types:

* ``ImageKey`` -- ``(path, true_label or None, blank)``: the RunInference key.
* error rows -- dicts of :data:`~mnist_batch.scoring.sinks.ERRORS_SCHEMA`.
* predictions -- ``pyarrow.Table`` chunks of :data:`~mnist_batch.scoring.sinks.PREDICTIONS_SCHEMA`
  (built per chunk, not per row: see :class:`FormatPredictionsFn`).
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import posixpath
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from mnist_batch import preprocess
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
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.sinks import COL_PREDICTED_CLASS, COL_TRUE_CLASS, PREDICTIONS_SCHEMA

METRICS_NAMESPACE = "mnist_batch"
ERRORS_TAG = "errors"
SKIPPED_TAG = "skipped"
MAX_MESSAGE_CHARS = 500

SKIP_DIRECTORY = "directory"
SKIP_EXTENSION = "not an image extension"


class ImageKey(NamedTuple):
    """RunInference key of one image: where it came from and what is known about it."""

    path: str
    true_label: int | None
    blank: bool


def error_row(path: str, stage: str, exc: BaseException, run_id: str) -> dict[str, Any]:
    """An :data:`~mnist_batch.scoring.sinks.ERRORS_SCHEMA` row for ``exc`` at ``stage``."""
    message = str(exc) or repr(exc)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {
        COL_PATH: path,
        COL_STAGE: stage,
        COL_ERROR_TYPE: type(exc).__name__,
        COL_MESSAGE: message,
        COL_RUN_ID: run_id,
    }


def extension_of(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def parent_name(path: str) -> str:
    """``a/b/7/x.png`` -> ``7`` (``/`` separated, as every Beam filesystem names files)."""
    return posixpath.basename(posixpath.dirname(path.replace(os.sep, "/")))


def label_from_name(name: str, class_names: Sequence[str]) -> int | None:
    """A class index from a class name or an index string; None when it is neither."""
    name = name.strip()
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    return None


def read_labels_csv(uri: str, class_names: Sequence[str]) -> dict[str, int]:
    """``path,label`` CSV (header optional) -> {path: label}; local paths also keyed absolute.

    Raises:
      ScoringError: unreadable file or a label that is not a class name or index.
    """
    try:
        with FileSystems.open(uri) as f:
            text = io.TextIOWrapper(f, encoding="utf-8").read()
    except Exception as exc:
        raise ScoringError(f"--labels-csv {uri}: cannot read ({type(exc).__name__}: {exc})") from exc
    labels: dict[str, int] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise ScoringError(f"--labels-csv {uri}:{line_no}: expected 'path,label', got {row!r}")
        path, label = row[0].strip(), row[1].strip()
        if line_no == 1 and (path.lower(), label.lower()) == ("path", "label"):
            continue
        index = label_from_name(label, class_names)
        if index is None:
            raise ScoringError(f"--labels-csv {uri}:{line_no}: label {label!r} is not a class name or index")
        labels[path] = index
        if "://" not in path:
            labels[os.path.abspath(path)] = index
    return labels


class ClassifyMatchFn(beam.DoFn):
    """FileMetadata -> main: image files; ``skipped``: (path, reason) for directories and other names."""

    def __init__(self, extensions: Sequence[str]) -> None:
        self._extensions = frozenset(e.lower() for e in extensions)
        self._matched = Metrics.counter(METRICS_NAMESPACE, "files_matched")
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "files_skipped")

    def process(self, metadata) -> Iterator[Any]:
        path = metadata.path
        if path.endswith("/") or path.endswith("\\"):
            reason = SKIP_DIRECTORY
        elif extension_of(path) not in self._extensions:
            reason = SKIP_EXTENSION
        else:
            self._matched.inc()
            yield metadata
            return
        self._skipped.inc()
        yield beam.pvalue.TaggedOutput(SKIPPED_TAG, (path, reason))


def open_local(path: str):
    """Opens a local file for reading bytes (one place, so tests can refuse mode-000 files as root)."""
    return open(path, "rb")


class LoadedFile(fileio.ReadableFile):
    """A ReadableFile whose bytes were already read (by the incremental hash step), so the
    decode step does not read the file a second time."""

    def __init__(self, metadata, data: bytes) -> None:
        super().__init__(metadata)
        self.data = data

    def read(self, mime_type: str = "application/octet-stream") -> bytes:
        return self.data


def read_bytes(readable) -> bytes:
    """The file's bytes: those already read for a :class:`LoadedFile`, plain ``open`` for a
    local path, else ``ReadableFile.read``.

    Image extensions are never compression extensions, so Beam's ``AUTO`` compression reads
    local image files as they are; the plain read skips the filesystem lookup and compression
    detection Beam does per file (measured: about 4 % of a local run's CPU).
    """
    path = readable.metadata.path
    if isinstance(readable, LoadedFile) or "://" in path:
        return readable.read()
    with open_local(path) as f:
        return f.read()


class DecodeImageFn(beam.DoFn):
    """ReadableFile -> main: ``(ImageKey, uint8 [28, 28])``; ``errors``: one error row per failure.

    Every failure is caught per element, with its stage: ``read`` (cannot open/read),
    ``decode`` (not a decodable image, over the pixel limit), ``preprocess`` (normalisation
    failed). Nothing is dropped silently: matched = decoded + errors.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        run_id: str,
        *,
        labels_csv: str | None = None,
        max_pixels: int = preprocess.MAX_IMAGE_PIXELS,
    ) -> None:
        self._class_names = tuple(class_names)
        self._run_id = run_id
        self._labels_csv = labels_csv
        self._max_pixels = max_pixels
        self._labels: dict[str, int] | None = None
        self._decoded = Metrics.counter(METRICS_NAMESPACE, "images_decoded")
        self._decode_errors = Metrics.counter(METRICS_NAMESPACE, "decode_errors")
        self._read_errors = Metrics.counter(METRICS_NAMESPACE, "read_errors")
        self._preprocess_errors = Metrics.counter(METRICS_NAMESPACE, "preprocess_errors")

    def setup(self) -> None:
        if self._labels_csv:
            self._labels = read_labels_csv(self._labels_csv, self._class_names)

    def label_of(self, path: str) -> int | None:
        if self._labels is not None:
            found = self._labels.get(path)
            if found is None and "://" not in path:
                found = self._labels.get(os.path.abspath(path))
            return found
        return label_from_name(parent_name(path), self._class_names)

    def process(self, readable) -> Iterator[Any]:
        path = readable.metadata.path
        try:
            data = read_bytes(readable)
        except Exception as exc:  # noqa: BLE001 -- a file that cannot be read is a dead letter, not a crash
            self._read_errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_row(path, "read", exc, self._run_id))
            return
        try:
            gray = preprocess.decode_image(data, max_pixels=self._max_pixels)
        except Exception as exc:  # noqa: BLE001 -- ImageDecodeError, or anything a decoder raises
            self._decode_errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_row(path, "decode", exc, self._run_id))
            return
        try:
            image = preprocess.to_mnist(gray)
        except Exception as exc:  # noqa: BLE001 -- a normalisation failure is a dead letter
            self._preprocess_errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_row(path, "preprocess", exc, self._run_id))
            return
        self._decoded.inc()
        yield ImageKey(path, self.label_of(path), image.blank), image.pixels


class FormatPredictionsFn(beam.DoFn):
    """``(ImageKey, PredictionResult)`` -> ``pyarrow.Table`` chunks of predictions rows.

    Rows are gathered per bundle and built column by column with numpy (argmax, confidence,
    flags and the probability lists of a whole chunk at once), at most ``rows_per_table``
    rows per table: what the Parquet sink and the statistics combiner then handle per chunk
    instead of per row. Counts ``scored`` / ``low_confidence`` / ``blank`` per chunk.

    With ``progress=True`` (local runs) each worker prints a progress line to stderr at most
    every ``progress_every_s`` seconds, e.g.
    ``mnist-batch score: progress: 1,200 images scored, 600 img/s (worker 8775)``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        model_id: str,
        run_id: str,
        review_threshold: float,
        *,
        progress: bool = False,
        progress_every_s: float = 5.0,
        rows_per_table: int = 4096,
    ) -> None:
        if rows_per_table <= 0:
            raise ValueError(f"rows_per_table must be > 0, got {rows_per_table}")
        self._class_names = tuple(class_names)
        self._model_id = model_id
        self._run_id = run_id
        self._threshold = float(review_threshold)
        self._progress = progress
        self._progress_every_s = progress_every_s
        self._rows_per_table = rows_per_table
        self._scored = Metrics.counter(METRICS_NAMESPACE, "scored")
        self._low = Metrics.counter(METRICS_NAMESPACE, "low_confidence")
        self._blank = Metrics.counter(METRICS_NAMESPACE, "blank")

    def setup(self) -> None:
        self._count = 0
        self._start = time.monotonic()
        self._last_report = self._start

    def start_bundle(self) -> None:
        self._now = datetime.datetime.now(datetime.UTC)
        self._keys: list[ImageKey] = []
        self._probabilities: list[np.ndarray] = []

    def process(self, element) -> Iterator[Any]:
        key, result = element
        self._keys.append(key)
        self._probabilities.append(result.inference)
        if self._progress:
            self._report(1)
        if len(self._keys) >= self._rows_per_table:
            yield self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        if self._keys:
            yield GlobalWindows.windowed_value(self._flush())

    def _flush(self):
        keys, probabilities = self._keys, self._probabilities
        self._keys, self._probabilities = [], []
        table = predictions_table(
            keys,
            np.asarray(probabilities, dtype=np.float32),
            class_names=self._class_names,
            model_id=self._model_id,
            run_id=self._run_id,
            review_threshold=self._threshold,
            scored_at=self._now,
        )
        self._scored.inc(table.num_rows)
        self._low.inc(int(np.count_nonzero(table.column(COL_LOW_CONFIDENCE).to_numpy())))
        self._blank.inc(int(np.count_nonzero(table.column(COL_BLANK).to_numpy())))
        return table

    def _report(self, rows: int) -> None:
        now = time.monotonic()
        if self._count == 0:  # time from the first scored image, not from loading the model
            self._start = self._last_report = now
        self._count += rows
        if now - self._last_report >= self._progress_every_s:
            self._last_report = now
            rate = self._count / max(now - self._start, 1e-9)
            print(
                f"mnist-batch score: progress: {self._count:,} images scored, {rate:,.0f} img/s (worker {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )


def predictions_table(
    keys: Sequence[ImageKey],
    probabilities: np.ndarray,
    *,
    class_names: Sequence[str],
    model_id: str,
    run_id: str,
    review_threshold: float,
    scored_at: datetime.datetime,
) -> pa.Table:
    """Predictions rows of N images as one :data:`~mnist_batch.scoring.sinks.PREDICTIONS_SCHEMA` table.

    Args:
      keys: N image keys.
      probabilities: float32 [N, C].
      class_names: C names.
      model_id, run_id: written on every row.
      review_threshold: rows with confidence below it are ``low_confidence``.
      scored_at: timestamp of every row (timezone-aware).

    Returns:
      A table of N rows, in the order of ``keys``.
    """
    n, num_classes = len(keys), len(class_names)
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(n, num_classes)
    predicted = probabilities.argmax(axis=1).astype(np.int32)
    confidence = probabilities[np.arange(n), predicted]
    names = np.asarray(class_names, dtype=object)
    true_labels = [k.true_label for k in keys]
    has_label = np.fromiter((t is not None for t in true_labels), dtype=bool, count=n)
    true_index = np.fromiter((-1 if t is None else t for t in true_labels), dtype=np.int32, count=n)
    offsets = np.arange(0, (n + 1) * num_classes, num_classes, dtype=np.int32)
    columns = {
        COL_PATH: pa.array([k.path for k in keys], pa.string()),
        COL_TRUE_LABEL: pa.array(true_index, pa.int32(), mask=~has_label),
        COL_TRUE_CLASS: pa.array(np.where(has_label, names[np.maximum(true_index, 0)], None), pa.string()),
        COL_PREDICTED_LABEL: pa.array(predicted, pa.int32()),
        COL_PREDICTED_CLASS: pa.array(names[predicted], pa.string()),
        COL_CONFIDENCE: pa.array(confidence, pa.float32()),
        COL_PROBABILITIES: pa.ListArray.from_arrays(pa.array(offsets), pa.array(probabilities.reshape(-1))),
        COL_LOW_CONFIDENCE: pa.array(confidence < review_threshold, pa.bool_()),
        COL_BLANK: pa.array(np.fromiter((bool(k.blank) for k in keys), dtype=bool, count=n), pa.bool_()),
        COL_MODEL_ID: pa.array([model_id] * n, pa.string()),
        COL_RUN_ID: pa.array([run_id] * n, pa.string()),
        COL_SCORED_AT: pa.array([scored_at] * n, PREDICTIONS_SCHEMA.field(COL_SCORED_AT).type),
    }
    return pa.Table.from_arrays([columns[name] for name in PREDICTIONS_SCHEMA.names], schema=PREDICTIONS_SCHEMA)


class InferenceErrorsFn(beam.DoFn):
    """RunInference's failed batches ``(batch of (ImageKey, example), exception)`` -> one error row per image."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._errors = Metrics.counter(METRICS_NAMESPACE, "inference_errors")

    def process(self, failed) -> Iterator[dict[str, Any]]:
        batch, exc = failed
        for key, _ in batch:
            self._errors.inc()
            yield error_row(key.path, "inference", exc, self._run_id)
