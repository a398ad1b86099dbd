"""Read + decode + preprocess, per file, with a dead letter for every failure.

Element types: ``ImageKey`` -- ``(path, true_label or None, blank)``, the RunInference key;
error rows -- dicts of :data:`~mnist_batch.tables.ERRORS_SCHEMA`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata

from mnist_batch import preprocess
from mnist_batch.constants import COL_ERROR_TYPE, COL_MESSAGE, COL_PATH, COL_RUN_ID, COL_STAGE
from mnist_batch.files import (
    DEFAULT_MAX_FILE_BYTES,
    FileTooLargeError,
    check_file_size,
    is_remote,
    local_path,
    read_at_most,
    read_local,
)
from mnist_batch.runstore import fs, s3
from mnist_batch.scoring.counters import counter
from mnist_batch.scoring.labels import LabelLookup, read_labels_csv
from mnist_batch.scoring.progress import ProgressFile, ProgressLine, progress_every_s

ERRORS_TAG = "errors"
"""Output tag of error rows."""
MAX_MESSAGE_CHARS = 500
READ_CONCURRENCY = 32
"""Remote files of one group read at once (a bucket answers in tens of milliseconds per request;
one ``GET`` at a time would leave the worker waiting): see :meth:`DecodeGroupFn.prefetch`."""


class ImageKey(NamedTuple):
    """RunInference key of one image: where it came from and what is known about it."""

    path: str
    true_label: int | None
    blank: bool


class ImageGroup(NamedTuple):
    """A group of decoded files, travelling as one element: N keys and uint8 [N, 28, 28] pixels."""

    keys: tuple[ImageKey, ...]
    pixels: np.ndarray


def error_row(path: str, stage: str, exc: BaseException, run_id: str) -> dict[str, Any]:
    """An :data:`~mnist_batch.tables.ERRORS_SCHEMA` row for ``exc`` at ``stage``."""
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


class LoadedFile(fileio.ReadableFile):
    """A ReadableFile whose bytes were already read (by the incremental hash step), so the
    decode step does not read the file a second time."""

    def __init__(self, metadata, data: bytes) -> None:
        super().__init__(metadata)
        self.data = data

    def read(self, mime_type: str = "application/octet-stream") -> bytes:
        return self.data


class FailedRead(fileio.ReadableFile):
    """A file whose read (ahead of decoding, :meth:`DecodeGroupFn.prefetch`) failed: :func:`read_bytes` raises ``error``."""

    def __init__(self, metadata, error: BaseException) -> None:
        super().__init__(metadata)
        self.error = error


class ReadableFileCoder(beam.coders.Coder):
    """Encodes a ReadableFile as ``(path, size, mtime, bytes or None)`` with Beam's native coders.

    A ReadableFile has no coder of its own, so Beam pickles it wherever a PCollection of files is
    materialised (the in-memory DirectRunner keeps the whole listing encoded while the progress
    line's file count is computed): pickled, 200,000 files added 175 MiB to the run's peak memory
    (docs/benchmarks.md). Files are read with Beam's default compression (``AUTO``: image
    extensions are never compression extensions), so none is encoded; a :class:`LoadedFile` keeps
    its bytes.
    """

    def __init__(self) -> None:
        self._inner = beam.coders.FastPrimitivesCoder()

    def encode(self, value: fileio.ReadableFile) -> bytes:
        meta = value.metadata
        data = value.data if isinstance(value, LoadedFile) else None
        return self._inner.encode((meta.path, meta.size_in_bytes, meta.last_updated_in_seconds, data))

    def decode(self, encoded: bytes) -> fileio.ReadableFile:
        path, size, mtime, data = self._inner.decode(encoded)
        meta = FileMetadata(path, size, mtime)
        return fileio.ReadableFile(meta) if data is None else LoadedFile(meta, data)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return fileio.ReadableFile


beam.coders.registry.register_coder(fileio.ReadableFile, ReadableFileCoder)


def read_bytes(readable, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's bytes, bounded and typed: only regular files, at most ``max_bytes``.

    Those already read for a :class:`LoadedFile`; for a local path :func:`read_local`; else
    (``scheme://``) :func:`read_remote`. Image extensions are never compression extensions, so
    Beam's ``AUTO`` compression reads image files as they are.

    Raises:
      NotRegularFileError: a FIFO, device, socket or folder (never opened).
      FileTooLargeError: over ``max_bytes`` by its metadata, or while reading.
      OSError: cannot open or read it.
    """
    if isinstance(readable, LoadedFile):
        check_file_size(len(readable.data), max_bytes)
        return readable.data
    if isinstance(readable, FailedRead):
        raise readable.error
    path = readable.metadata.path
    if is_remote(path):
        return read_remote(readable, max_bytes)
    return read_local(local_path(path), max_bytes)


def read_remote(readable, max_bytes: int) -> bytes:
    """A remote file's bytes: its listed size checked first, then a read of at most ``max_bytes + 1``."""
    check_file_size(readable.metadata.size_in_bytes, max_bytes)
    path = readable.metadata.path
    if s3.is_s3(path):  # one GET with a shared client (Beam's S3 filesystem makes a client per call)
        data = s3.read_at_most(path, max_bytes + 1)
        if len(data) > max_bytes:
            raise FileTooLargeError(f"file has more than --max-file-bytes {max_bytes:,} bytes (it grew while read)")
        return data
    with readable.open() as f:
        return read_at_most(f, max_bytes)


class DecodeImageFn(beam.DoFn):
    """ReadableFile -> main: ``(ImageKey, uint8 [28, 28])``; ``errors``: one error row per failure.

    Every failure is caught per element, with its stage: ``read`` (cannot open/read, not a
    regular file, over ``max_file_bytes``: see :func:`read_bytes`),
    ``decode`` (not a decodable image, over the pixel limit), ``preprocess`` (normalisation
    failed). Nothing is dropped silently: matched = decoded + errors.

    With ``progress`` (local runs) each worker prints a progress line at most every 5 s, e.g.
    ``mnist-batch score: progress: 1,200 of 10,000 files done (12 %), 600 files/s, ETA 15 s (worker 8775)``
    (the total and ETA when the run hands in the number of files as the side input ``total``).
    Decoding and inference run fused, file by file, so this is the run's real progress.

    With ``progress_dir`` (a job on a cluster, whose launcher waits) each worker instance also
    keeps its files done in a progress file there (:class:`~mnist_batch.scoring.progress.ProgressFile`,
    rewritten every ``MNIST_BATCH_PROGRESS_S`` of the launcher and at the end of each bundle),
    which the launcher sums into its own progress line.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        run_id: str,
        *,
        labels_csv: str | None = None,
        max_pixels: int = preprocess.MAX_IMAGE_PIXELS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        progress: bool = False,
        progress_dir: str | None = None,
        s3_options: dict[str, Any] | None = None,
    ) -> None:
        self._class_names = tuple(class_names)
        self._progress = progress
        self._progress_dir = progress_dir
        self._progress_every_s = progress_every_s()  # the launcher's interval, not the worker's environment
        self._run_id = run_id
        self._labels_csv = labels_csv
        self._max_pixels = max_pixels
        self._max_file_bytes = max_file_bytes
        self._s3_options = s3_options
        self._label_of = LabelLookup(self._class_names)
        self._decoded = counter("images_decoded")
        self._decode_errors = counter("decode_errors")
        self._read_errors = counter("read_errors")
        self._preprocess_errors = counter("preprocess_errors")

    def setup(self) -> None:
        fs.configure_s3(self._s3_options)  # the job's --s3_* options, on whichever worker this runs
        self._progress_line = ProgressLine() if self._progress else None
        self._progress_file = ProgressFile(self._progress_dir, self._progress_every_s) if self._progress_dir else None
        if self._labels_csv:
            self._label_of = LabelLookup(self._class_names, read_labels_csv(self._labels_csv, self._class_names))

    def process(self, readable, total: int | None = None) -> Iterator[Any]:
        decoded = self.decode_one(readable, total)
        if isinstance(decoded, dict):
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, decoded)
        else:
            yield decoded

    def finish_bundle(self) -> None:
        if self._progress_file is not None:
            self._progress_file.write()  # before the bundle's shards close, so before the commit

    def decode_one(self, readable, total: int | None = None) -> tuple[ImageKey, np.ndarray] | dict[str, Any]:
        """One file -> ``(ImageKey, uint8 [28, 28])``, or its error row (stage ``read``/``decode``/``preprocess``)."""
        if self._progress_line is not None:
            self._progress_line.total = total
            self._progress_line.add()
        if self._progress_file is not None:
            self._progress_file.add()
        path = readable.metadata.path
        try:
            data = read_bytes(readable, self._max_file_bytes)
        except Exception as exc:  # noqa: BLE001 -- a file that cannot be read is a dead letter, not a crash
            self._read_errors.inc()
            return error_row(path, "read", exc, self._run_id)
        try:
            gray = preprocess.decode_image(data, max_pixels=self._max_pixels)
        except Exception as exc:  # noqa: BLE001 -- ImageDecodeError, or anything a decoder raises
            self._decode_errors.inc()
            return error_row(path, "decode", exc, self._run_id)
        try:
            image = preprocess.to_mnist(gray)
        except Exception as exc:  # noqa: BLE001 -- a normalisation failure is a dead letter
            self._preprocess_errors.inc()
            return error_row(path, "preprocess", exc, self._run_id)
        self._decoded.inc()
        return ImageKey(path, self._label_of(path), image.blank), image.pixels


class DecodeGroupFn(DecodeImageFn):
    """A group (list) of ReadableFiles -> main: one :class:`ImageGroup` of the decoded ones;
    ``errors``: one error row per file that failed (per file, as :class:`DecodeImageFn`).

    Groups pay Beam's per-element cost once per few hundred files instead of once per file.
    """

    def setup(self) -> None:
        super().setup()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)

    def prefetch(self, readables: Sequence[Any]) -> list[Any]:
        """The group with its remote files read ahead, ``READ_CONCURRENCY`` at a time.

        Each becomes a :class:`LoadedFile` (its bytes) or a :class:`FailedRead` (its error, recorded
        as a ``read`` error by :meth:`decode_one`, as a sequential read's would be). Local files are
        left to be read one by one (a local read is a fraction of a millisecond).
        """
        remote = [i for i, r in enumerate(readables) if type(r) is fileio.ReadableFile and is_remote(r.metadata.path)]
        if len(remote) < 2:
            return list(readables)
        if getattr(self, "_pool", None) is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(READ_CONCURRENCY, thread_name_prefix="read")
        futures = {i: self._pool.submit(read_bytes, readables[i], self._max_file_bytes) for i in remote}
        ready = list(readables)
        for i, future in futures.items():
            meta = readables[i].metadata
            try:
                ready[i] = LoadedFile(meta, future.result())
            except Exception as exc:  # noqa: BLE001 -- recorded per file by decode_one
                ready[i] = FailedRead(meta, exc)
        return ready

    def process(self, readables, total: int | None = None) -> Iterator[Any]:
        keys, pixels = [], []
        for readable in self.prefetch(readables):
            decoded = self.decode_one(readable, total)
            if isinstance(decoded, dict):
                yield beam.pvalue.TaggedOutput(ERRORS_TAG, decoded)
            else:
                keys.append(decoded[0])
                pixels.append(decoded[1])
        if keys:
            yield ImageGroup(tuple(keys), np.stack(pixels))


class DecodeImages(beam.PTransform):
    """ReadableFile -> ``{"images": ImageGroup, "errors": error rows}``: files in groups of ``group_size``.

    ``total``: an optional one-element PCollection, the number of files (for the progress line).
    """

    def __init__(self, fn: DecodeGroupFn, total: beam.PCollection | None = None, *, group_size: int = 256) -> None:
        super().__init__()
        self._fn = fn
        self._total = total
        self._group_size = group_size

    def expand(self, files):
        side = [beam.pvalue.AsSingleton(self._total, default_value=None)] if self._total is not None else []
        groups = files | "GroupFiles" >> beam.BatchElements(
            min_batch_size=self._group_size, max_batch_size=self._group_size
        )
        out = groups | "ReadDecodePreprocess" >> beam.ParDo(self._fn, *side).with_outputs(ERRORS_TAG, main="images")
        return {"images": out.images, "errors": out[ERRORS_TAG]}
