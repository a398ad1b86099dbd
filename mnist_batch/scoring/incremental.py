"""The incremental filter in the job: files scored by earlier committed runs are skipped.

The launcher only lists the committed runs (one marker per run,
:func:`mnist_batch.runstore.history.committed_runs`); the earlier runs' manifests and errors
are read *inside the pipeline* by :class:`ReadKnownFiles`, which turns each run into one blob
of 16-byte key digests (:func:`~mnist_batch.runstore.history.known_digests`) and joins them
into one side input. So neither the job graph nor the launcher grows with the number of files
ever scored; each worker holds 16 bytes per known file in the blob plus a set of them
(measured: +264 MiB peak at a million keys on one DirectRunner process; docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from mnist_batch.constants import COL_PATH, COL_RUN_ID
from mnist_batch.files import DEFAULT_MAX_FILE_BYTES, is_remote, local_path, unescape_path
from mnist_batch.runstore.history import DIGEST_BYTES, RunInfo, key_digest, known_digests
from mnist_batch.scoring.counters import counter
from mnist_batch.scoring.decode import LoadedFile, read_bytes
from mnist_batch.scoring.matching import SKIPPED_TAG
from mnist_batch.scoring.storage_fn import StorageDoFn, storage_settings


def file_version(path: str) -> str | None:
    """A local file's ``<inode>:<ctime ns>``: what changes when its content is replaced even with
    its size and mtime kept (``touch -r``, ``cp -p``, ``rsync -t``: a new inode or a new ctime;
    ctime cannot be set back by a user). None for remote files and for a file gone since it was
    listed (the decode step records that)."""
    if is_remote(path):
        return None
    try:
        st = os.stat(local_path(unescape_path(path)))
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_ctime_ns}"


class KnownDigestsFn(StorageDoFn):
    """``(dt, run_id)`` of a committed run -> one blob of its files' key digests."""

    def __init__(self, root: str, kind: str, storage_settings: dict[str, Any] | None = None) -> None:
        self._root = root
        self._kind = kind
        super().__init__(storage_settings)

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def process(self, run: tuple[str, str]) -> Iterator[bytes]:
        yield known_digests(RunInfo(run[0], run[1], self._root), self._kind)


class JoinBlobsFn(beam.CombineFn):
    """Concatenates byte blobs (the digests of every earlier run)."""

    def create_accumulator(self) -> list[bytes]:
        return []

    def add_input(self, acc: list[bytes], blob: bytes) -> list[bytes]:
        acc.append(blob)
        return acc

    def merge_accumulators(self, accs) -> list[bytes]:
        return [b for acc in accs for b in acc]

    def extract_output(self, acc: list[bytes]) -> bytes:
        return b"".join(acc)


class ReadKnownFiles(beam.PTransform):
    """PBegin -> one blob of the key digests of every file the given committed runs took on."""

    def __init__(self, root: str, runs: list[tuple[str, str]], kind: str) -> None:
        super().__init__()
        self._root = root
        self._runs = list(runs)
        self._kind = kind

    def expand(self, pbegin):
        return (
            pbegin
            | "ListEarlierRuns" >> beam.Create(self._runs)
            | "ReadManifests" >> beam.ParDo(KnownDigestsFn(self._root, self._kind, storage_settings(pbegin)))
            | "JoinDigests" >> beam.CombineGlobally(JoinBlobsFn()).without_defaults()
        )


class SelectNewFilesFn(StorageDoFn):
    """ReadableFile -> main: the file; ``manifest``: its manifest row; ``already_scored``: counts.

    A file whose key digest is in the side input ``known`` is skipped (reason
    :data:`SKIP_ALREADY_SCORED`) and counted: one count per bundle goes to ``already_scored``;
    every other file is passed on and recorded in the manifest.
    """

    MANIFEST_TAG = "manifest"
    ALREADY_TAG = "already_scored"

    def __init__(
        self,
        run_id: str,
        key: str,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        storage_settings: dict[str, Any] | None = None,
    ) -> None:
        self._run_id = run_id
        self._key = key
        self._max_file_bytes = max_file_bytes
        super().__init__(storage_settings)
        self._already = counter("files_already_scored")
        self._already_here = 0  # added to the counter once per bundle (a counter's inc costs ~1 µs)
        self._blob: bytes | None = None
        self._known: frozenset[bytes] = frozenset()

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def finish_bundle(self) -> Iterator[Any]:
        """One count of this bundle's files scored before, to ``already_scored``: a nightly run over
        a million known files would otherwise carry a million ``(path, reason)`` elements to a
        count (measured: docs/benchmarks.md, issue 24)."""
        if self._already_here:
            self._already.inc(self._already_here)
            yield beam.pvalue.TaggedOutput(self.ALREADY_TAG, GlobalWindows.windowed_value(self._already_here))
            self._already_here = 0

    def _lookup(self, blob: bytes) -> frozenset[bytes]:
        if blob is not self._blob:
            step = DIGEST_BYTES
            self._known = frozenset(blob[i : i + step] for i in range(0, len(blob), step))
            self._blob = blob
        return self._known

    def _seen(self, path: str, size: int, mtime: float, sha: str | None, version: str | None, known: bytes) -> bool:
        """Whether an earlier run took this file on: its digest, or (``stat``) the digest without a
        version that runs before the ``version`` column wrote (:mod:`mnist_batch.runstore.history`)."""
        found = self._lookup(known)
        if self._key != "stat":
            return key_digest(self._key, path, sha=sha) in found
        if key_digest("stat", path, size, mtime, version=version) in found:
            return True
        return version is not None and key_digest("stat", path, size, mtime) in found

    def process(self, readable, known: bytes = b"") -> Iterator[Any]:
        meta = readable.metadata
        sha = None
        if self._key == "hash":
            try:
                data = read_bytes(readable, self._max_file_bytes)
            except Exception:  # noqa: BLE001 -- unreadable: not skipped; the decode step records the error
                sha = None
            else:
                sha = hashlib.sha256(data).hexdigest()
                readable = LoadedFile(meta, data)  # decoding reuses these bytes, no second read
        size, mtime = int(meta.size_in_bytes), float(meta.last_updated_in_seconds)
        version = getattr(meta, "version", None) or file_version(meta.path)  # S3: the listing's ETag
        comparable = known and (self._key == "stat" or sha is not None)
        if comparable and self._seen(meta.path, size, mtime, sha, version, known):
            self._already_here += 1  # counted, not one element per file: see finish_bundle
            return
        row = {COL_PATH: meta.path, "size": size, "mtime": mtime, "sha256": sha, "version": version}
        yield beam.pvalue.TaggedOutput(self.MANIFEST_TAG, {**row, COL_RUN_ID: self._run_id})
        yield readable


class SelectFiles(beam.PTransform):
    """``{"images", "skipped"}`` -> the same without files scored before, plus ``"manifest"`` rows
    and ``"already_scored"`` (counts of the files skipped as scored before, to be summed).

    Args:
      root: the runs root.
      run_id: this run's id (written in the manifest).
      key: ``stat`` or ``hash``.
      earlier: ``(dt, run_id)`` of the committed runs whose files are skipped; empty for a
        run that is not incremental (every file is taken on and recorded).
      max_file_bytes: the run's read limit (the ``hash`` key reads each file once, for decoding too).
    """

    def __init__(
        self,
        root: str,
        run_id: str,
        key: str = "stat",
        earlier: list[tuple[str, str]] | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        super().__init__()
        self._root = root
        self._run_id = run_id
        self._key = key
        self._earlier = list(earlier or [])
        self._max_file_bytes = max_file_bytes

    @property
    def keeps_every_file(self) -> bool:
        """True when no earlier run is read (not incremental): every matched file is taken on."""
        return not self._earlier

    def expand(self, files):
        tag = SelectNewFilesFn.MANIFEST_TAG
        settings = storage_settings(files["images"])
        fn = SelectNewFilesFn(self._run_id, self._key, self._max_file_bytes, settings)
        outputs = (SKIPPED_TAG, tag, SelectNewFilesFn.ALREADY_TAG)
        if self._earlier:
            known = files["images"].pipeline | "ReadKnownFiles" >> ReadKnownFiles(self._root, self._earlier, self._key)
            side = beam.pvalue.AsSingleton(known, default_value=b"")
            selected = files["images"] | "DropScoredBefore" >> beam.ParDo(fn, side).with_outputs(
                *outputs, main="images"
            )
        else:
            selected = files["images"] | "RecordFiles" >> beam.ParDo(fn).with_outputs(*outputs, main="images")
        skipped = (files["skipped"], selected[SKIPPED_TAG]) | "MergeSkipped" >> beam.Flatten()
        return {
            "images": selected.images,
            "skipped": skipped,
            "manifest": selected[tag],
            "already_scored": selected[SelectNewFilesFn.ALREADY_TAG],
        }
