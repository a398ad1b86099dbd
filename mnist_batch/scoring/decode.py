"""Read + decode + preprocess, per file, with a dead letter for every failure.

Element types: ``ImageKey`` -- ``(path, true_label or None, blank)``, the RunInference key;
error rows -- dicts of :data:`~mnist_batch.tables.ERRORS_SCHEMA`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.transforms.window import GlobalWindows

from mnist_batch import decoding
from mnist_batch.files import (
    DEFAULT_MAX_FILE_BYTES,
    FileTooLargeError,
    check_file_size,
    is_remote,
    local_path,
    read_local,
)
from mnist_batch.runstore.errors import storage_failure, store_unreachable
from mnist_batch.runstore.storage import storage_for
from mnist_batch.scoring import decode_pool
from mnist_batch.scoring.aggregate import (  # noqa: F401 -- re-exported: the rows' home is aggregate.py
    MAX_MESSAGE_CHARS,
    ImageGroup,
    ImageKey,
    error_row,
    failure_row,
)
from mnist_batch.scoring.counters import counter
from mnist_batch.scoring.labels import LabelLookup, read_labels_csv
from mnist_batch.scoring.progress import ProgressFile, ProgressLine, progress_every_s
from mnist_batch.scoring.storage_fn import StorageDoFn

ERRORS_TAG = "errors"
"""Output tag of error rows."""
READ_CONCURRENCY = 32
"""Remote files of one group read at once (a bucket answers in tens of milliseconds per request;
one ``GET`` at a time would leave the worker waiting): see :meth:`DecodeGroupFn.prefetch`."""


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
    data = storage_for(path).read_at_most(path, max_bytes + 1)  # S3: one GET with the shared client
    if len(data) > max_bytes:
        raise FileTooLargeError(f"file has more than --max-file-bytes {max_bytes:,} bytes (it grew while read)")
    return data


class DecodeImageFn(StorageDoFn):
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
        max_pixels: int = decoding.MAX_IMAGE_PIXELS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        progress: bool = False,
        progress_dir: str | None = None,
        storage_settings: dict[str, Any] | None = None,
    ) -> None:
        self._class_names = tuple(class_names)
        self._progress = progress
        self._progress_dir = progress_dir
        self._progress_every_s = progress_every_s()  # the launcher's interval, not the worker's environment
        self._run_id = run_id
        self._labels_csv = labels_csv
        self._max_pixels = max_pixels
        self._max_file_bytes = max_file_bytes
        super().__init__(storage_settings)
        self._label_of = LabelLookup(self._class_names)
        self._decoded = counter("images_decoded")
        self._stage_errors = {stage: counter(f"{stage}_errors") for stage in ("read", "decode", "preprocess")}

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs
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

    def count_progress(self, files: int, total: int | None) -> None:
        if self._progress_line is not None:
            self._progress_line.total = total
            self._progress_line.add(files)
        if self._progress_file is not None:
            self._progress_file.add(files)

    def finish_bundle(self) -> None:
        self.write_progress()

    def write_progress(self) -> None:
        if self._progress_file is not None:
            self._progress_file.write()  # before the bundle's shards close, so before the commit

    def failed(self, path: str, stage: str, error_type: str, message: str) -> dict[str, Any]:
        """The error row of a file that failed at ``stage`` (counted)."""
        self._stage_errors[stage].inc()
        return failure_row(path, stage, error_type, message, self._run_id)

    def source_of(self, readable) -> decode_pool.Source | dict[str, Any]:
        """``(path, bytes or None)`` for :func:`~mnist_batch.scoring.decode_pool.decode_file`, or the
        error row of a file that could not be read here. A local file is left for the decoder to
        read (``None``); a remote one is read here (or was, ahead: :class:`LoadedFile`)."""
        path = readable.metadata.path
        if type(readable) is fileio.ReadableFile and not is_remote(path):
            return local_path(path), None
        try:
            return path, read_bytes(readable, self._max_file_bytes)
        except Exception as exc:  # a file that cannot be read is a dead letter, not a crash ...
            if store_unreachable(exc):  # ... but a store that is away fails the run, in one line
                raise storage_failure(f"reading the input image {path}", exc, before_commit=True) from exc
            return self.failed(path, "read", type(exc).__name__, str(exc) or repr(exc))

    def decode_one(self, readable, total: int | None = None) -> tuple[ImageKey, np.ndarray] | dict[str, Any]:
        """One file -> ``(ImageKey, uint8 [28, 28])``, or its error row (stage ``read``/``decode``/``preprocess``)."""
        self.count_progress(1, total)
        path = readable.metadata.path
        source = self.source_of(readable)
        if isinstance(source, dict):
            return source
        result = decode_pool.decode_file(source, self._max_file_bytes, self._max_pixels)
        if isinstance(result, tuple):
            stage, exc = result
            return self.failed(path, stage, type(exc).__name__, str(exc) or repr(exc))
        self._decoded.inc()
        return ImageKey(path, self._label_of(path), result.blank), result.pixels


class DecodeGroupFn(DecodeImageFn):
    """A group (list) of ReadableFiles -> main: one :class:`ImageGroup` of the decoded ones;
    ``errors``: one error row per file that failed (per file, as :class:`DecodeImageFn`).

    Groups pay Beam's per-element cost once per few hundred files instead of once per file.

    With ``decode_helpers`` (1: the single-process runner on two or more cores), groups are decoded
    in a helper process (:class:`~mnist_batch.scoring.decode_pool.DecodePool`) while this process
    runs the model on the group before: a group's outputs may then come out while a later group is
    processed, or at the end of the bundle. Every file still ends as a decoded image or an error row.
    """

    def __init__(self, *args, decode_helpers: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._decode_helpers = decode_helpers

    def setup(self) -> None:
        super().setup()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._decoders: decode_pool.DecodePool | None = None
        self._groups_seen = 0

    def start_helper(self) -> None:
        """Starts the decode helper at a run's second group (a run of one group never waits for it)."""
        self._groups_seen += 1
        if self._decode_helpers and self._groups_seen >= 2 and self._decoders is None:
            self._decoders = decode_pool.DecodePool(self._max_file_bytes, self._max_pixels)

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)
        if getattr(self, "_decoders", None) is not None:
            self._decoders.close()

    def prefetch(self, readables: Sequence[Any]) -> list[Any]:
        """The group with its remote files read ahead, ``READ_CONCURRENCY`` at a time.

        Each becomes a :class:`LoadedFile` (its bytes) or a :class:`FailedRead` (its error, recorded
        as a ``read`` error by :meth:`source_of`, as a sequential read's would be). Local files are
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
            except Exception as exc:  # noqa: BLE001 -- recorded per file by source_of
                ready[i] = FailedRead(meta, exc)
        return ready

    def process(self, readables, total: int | None = None) -> Iterator[Any]:
        paths, sources = [], []
        for readable in self.prefetch(readables):
            source = self.source_of(readable)
            if isinstance(source, dict):
                yield beam.pvalue.TaggedOutput(ERRORS_TAG, source)
            else:
                paths.append(readable.metadata.path)
                sources.append(source)
        self.count_progress(len(readables), total)
        if not sources:
            return
        self.start_helper()
        if self._decoders is None:
            yield from self.outputs(paths, decode_pool.decode_group(sources, self._max_file_bytes, self._max_pixels))
            return
        self._decoders.submit(sources, paths)
        for done_paths, group in self._decoders.ready():
            yield from self.outputs(done_paths, group)

    def finish_bundle(self) -> Iterator[Any]:
        self.write_progress()
        if getattr(self, "_decoders", None) is None:
            return
        decoders, self._decoders = self._decoders, None
        try:
            done = decoders.drain()
        finally:
            decoders.close()  # waited for, so its CPU time is the run's
        for paths, group in done:
            for out in self.outputs(paths, group):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
                else:
                    yield GlobalWindows.windowed_value(out)

    def outputs(self, paths: Sequence[str], group: decode_pool.DecodedGroup) -> Iterator[Any]:
        """A decoded group's error rows (tagged) and its :class:`ImageGroup` (when any file decoded)."""
        for index, stage, error_type, message in group.failed:
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, self.failed(paths[index], stage, error_type, message))
        if group.ok:
            self._decoded.inc(len(group.ok))
            keys = tuple(
                ImageKey(paths[i], self._label_of(paths[i]), bool(blank))
                for i, blank in zip(group.ok, group.blank, strict=True)
            )
            yield ImageGroup(keys, group.pixels)


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
