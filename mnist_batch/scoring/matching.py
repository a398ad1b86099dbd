"""Input patterns -> readable image files: list, classify, read matches, reshuffle.

Local patterns are listed by :func:`~mnist_batch.scoring.listing.list_local` on the workers
(:class:`ListLocalFilesFn`), which accounts for every entry it meets; an S3 folder
(``s3://b/scans/**``) by one paginated ``LIST`` through the run store's client
(:class:`ListS3FolderFn`), which also gives each object's ETag (its ``version``, for the
incremental key); other remote ones by Beam's ``MatchAll``. Every entry that is not an image file
goes to ``skipped`` with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.options.pipeline_options import PipelineOptions

from mnist_batch.files import is_remote, local_path
from mnist_batch.runstore.beam_s3 import bound_beam_client
from mnist_batch.runstore.errors import storage_step
from mnist_batch.runstore.storage import storage_for
from mnist_batch.scoring.counters import counter
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.listing import (  # noqa: F401 -- extension_of, skip_reason: re-exported
    SKIP_EXTENSION,
    ListedFile,
    classify_listing,
    extension_of,
    folder_id,
    skip_reason,
)
from mnist_batch.scoring.read import folder_prefix
from mnist_batch.scoring.runners import runs_in_one_process
from mnist_batch.scoring.storage_fn import StorageDoFn, storage_settings

SKIPPED_TAG = "skipped"
"""Output tag of ``(path, reason)`` for every matched entry that is not scored."""


class ClassifyMatchFn(beam.DoFn):
    """FileMetadata -> main: image files; ``skipped``: (path, reason) for directories, other names,
    and files under the run's own remote output folders."""

    def __init__(self, extensions: Sequence[str], output_dirs: Sequence[str] = ()) -> None:
        self._extensions = frozenset(e.lower() for e in extensions)
        self._output_prefixes = tuple(d.rstrip("/") + "/" for d in output_dirs if is_remote(d))
        self._matched = counter("files_matched")
        self._skipped = counter("files_skipped")

    def setup(self) -> None:
        bound_beam_client()  # Beam's MatchAll, the step before, lists a glob through Beam's S3 filesystem

    def process(self, metadata) -> Iterator[Any]:
        reason = skip_reason(metadata.path, self._extensions, self._output_prefixes)
        if reason is None:
            self._matched.inc()
            yield metadata
        else:
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, (metadata.path, reason))


class ListLocalFilesFn(beam.DoFn):
    """Local pattern -> main: a ReadableFile per image file; ``skipped``: (path, reason) for the rest.

    Runs :func:`~mnist_batch.scoring.listing.list_local` on the worker: broken symlinks, symlink
    loops, symlinks to folders, unreadable folders and folders of this tool's outputs (the run's
    own ``output_dirs`` included) become skipped rows instead of vanishing. Files are classified
    here as ``ClassifyMatches`` does remote ones (:func:`skip_reason`: other extensions are
    skipped) and leave as the ``ReadableFile`` that ``ReadMatches`` would make: one step per file
    where there were three (measured: docs/benchmarks.md, issue 24).
    """

    def __init__(self, extensions: Sequence[str] = (), output_dirs: Sequence[str] = ()) -> None:
        self._output_dirs = tuple(os.path.abspath(local_path(d)) for d in output_dirs if not is_remote(d))
        self._extensions = frozenset(e.lower() for e in extensions)
        self._listed = counter("files_listed")
        self._matched = counter("files_matched")
        self._skipped = counter("files_skipped")

    def process(self, pattern: str) -> Iterator[Any]:
        own = [i for i in (folder_id(d) for d in self._output_dirs) if i is not None]
        # counted here, added to the counters once per pattern (a counter's inc costs ~1 µs)
        listed = matched = skipped = 0
        try:
            for item in classify_listing(pattern, self._extensions, own):  # names not UTF-8: escaped
                if isinstance(item, ListedFile):
                    listed += 1
                    matched += 1
                    yield fileio.ReadableFile(FileMetadata(item.path, item.size_in_bytes, item.last_updated_in_seconds))
                else:
                    listed += item[1] == SKIP_EXTENSION  # a file of another extension was listed too
                    skipped += 1
                    yield beam.pvalue.TaggedOutput(SKIPPED_TAG, item)
        finally:
            self._listed.inc(listed)
            self._matched.inc(matched)
            self._skipped.inc(skipped)


class VersionedMetadata(FileMetadata):
    """Beam's ``FileMetadata`` plus the store's ``version`` of the object (S3: its ETag), which
    changes with every new content even when size and mtime do not."""

    def __init__(self, path: str, size_in_bytes: int, last_updated_in_seconds: float, version: str | None) -> None:
        super().__init__(path, size_in_bytes, last_updated_in_seconds)
        self.version = version


class ListS3FolderFn(StorageDoFn):
    """An S3 folder pattern (``s3://b/scans/**``) -> ``VersionedMetadata`` of every object under it.

    What Beam's ``MatchAll`` gives for the same pattern (the same paths, sizes and mtimes, the
    mtime converted as Beam converts it, so earlier runs' keys still match) plus each ETag. A
    folder with nothing under it fails the job as ``MatchAll`` with ``DISALLOW`` does.
    """

    def __init__(self, storage_settings: dict[str, Any] | None = None) -> None:
        super().__init__(storage_settings)

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def process(self, pattern: str) -> Iterator[VersionedMetadata]:
        found = False
        prefix = folder_prefix(pattern)
        with storage_step(f"listing the input {pattern}", before_commit=True):  # a lost server: one line
            for path, size, mtime, version in storage_for(prefix).list_versioned(prefix):
                found = True
                yield VersionedMetadata(path, size, mtime, version)
        if not found:
            raise ScoringError(f"--input: {pattern} matches no files")


def file_to_tuple(readable: fileio.ReadableFile) -> tuple[str, int, float, str | None]:
    """A ReadableFile as a plain tuple: encoded natively by Beam's coders instead of pickled.

    ``ReadMatches`` here always uses Beam's default compression (``AUTO``: image extensions are
    never compression extensions), so the tuple needs no compression field.
    """
    meta = readable.metadata
    return (meta.path, meta.size_in_bytes, meta.last_updated_in_seconds, getattr(meta, "version", None))


def tuple_to_file(item: tuple) -> fileio.ReadableFile:
    path, size, mtime, *version = item
    if version and version[0] is not None:
        return fileio.ReadableFile(VersionedMetadata(path, size, mtime, version[0]))
    return fileio.ReadableFile(FileMetadata(path, size, mtime))


class ReshuffleFiles(beam.PTransform):
    """``Reshuffle`` of ReadableFiles that moves them as plain tuples.

    A ReadableFile has no Beam coder, so a shuffle pickles it (twice per file on the
    DirectRunner, with its size estimate); the tuple ``(path, size, mtime)`` is
    encoded natively, and the same ReadableFile is rebuilt after the shuffle.
    """

    def expand(self, files):
        return (
            files
            | "ToTuples" >> beam.Map(file_to_tuple)
            | "Reshuffle" >> beam.Reshuffle()
            | "ToReadableFiles" >> beam.Map(tuple_to_file)
        )


def needs_reshuffle(options: PipelineOptions | None) -> bool:
    """False only on the in-memory DirectRunner (the default local run), True on every other runner.

    The in-memory DirectRunner runs every stage in one process with one worker, so a
    ``Reshuffle`` has no workers to spread files over and only costs: encoding, grouping and
    re-windowing every file (measured on 50,000 files: 13-16 % of the run's wall time, same
    peak memory; docs/benchmarks.md). Multi-processing, portable (Flink, Spark) and Dataflow
    runs keep it.
    """
    return not runs_in_one_process(options)


class MatchImageFiles(beam.PTransform):
    """Patterns -> ``{"images": ReadableFile, "skipped": (path, reason)}``.

    Local patterns: ``ListLocalFiles`` (:class:`~mnist_batch.scoring.matching.ListLocalFilesFn`:
    lists, classifies and makes ReadableFiles in one step; what cannot be listed, other names and
    this tool's outputs go to ``skipped``); remote patterns: ``MatchAll`` (empty match disallowed)
    -> ``ClassifyMatches`` (extension filter; directories, other names and files under a remote
    ``output_dirs`` go to ``skipped``) -> ``ReadMatches``. Then ``DropDuplicatePaths`` when several
    patterns may overlap -> ``Reshuffle`` (spreads reading and scoring over workers;
    ``reshuffle=False`` leaves it out, for runners with a single worker: see
    :func:`needs_reshuffle`).
    """

    def __init__(
        self,
        patterns: Sequence[str],
        extensions: Sequence[str],
        *,
        reshuffle: bool = True,
        output_dirs: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._patterns = list(patterns)
        self._extensions = tuple(extensions)
        self._reshuffle = reshuffle
        self._output_dirs = tuple(output_dirs)

    def expand(self, pbegin):
        local = [p for p in self._patterns if not is_remote(p)]
        remote = [p for p in self._patterns if is_remote(p)]
        readable, skipped = [], []
        if local:
            listed = (
                pbegin
                | "CreateLocalPatterns" >> beam.Create(local)
                | "ListLocalFiles"
                >> beam.ParDo(ListLocalFilesFn(self._extensions, self._output_dirs)).with_outputs(
                    SKIPPED_TAG, main="files"
                )
            )
            readable.append(listed.files)
            skipped.append(listed[SKIPPED_TAG])
        if remote:
            folders = [p for p in remote if folder_prefix(p) is not None]
            matched = []
            if folders:
                settings = storage_settings(pbegin)
                matched.append(
                    pbegin
                    | "CreateS3Folders" >> beam.Create(folders)
                    | "ListS3Folders" >> beam.ParDo(ListS3FolderFn(settings))
                )
            if len(folders) < len(remote):
                matched.append(
                    pbegin
                    | "CreatePatterns" >> beam.Create([p for p in remote if p not in folders])
                    | "MatchAll" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
                )
            matched = matched[0] if len(matched) == 1 else tuple(matched) | "MergeRemoteMatches" >> beam.Flatten()
            classified = matched | "ClassifyMatches" >> beam.ParDo(
                ClassifyMatchFn(self._extensions, self._output_dirs)
            ).with_outputs(SKIPPED_TAG, main="images")
            skipped.append(classified[SKIPPED_TAG])
            readable.append(classified.images | "ReadMatches" >> fileio.ReadMatches())
        if len(readable) > 1:
            readable = [tuple(readable) | "MergeMatches" >> beam.Flatten()]
        readable = readable[0]
        if len(self._patterns) > 1:
            readable = (
                readable
                | "KeyByPath" >> beam.Map(lambda f: (f.metadata.path, f))
                | "DropDuplicatePaths" >> beam.CombinePerKey(lambda fs: next(iter(fs)))
                | "DropPathKeys" >> beam.Values()
            )
        if self._reshuffle:
            readable = readable | "Reshuffle" >> ReshuffleFiles()
        if len(skipped) > 1:
            skipped = [tuple(skipped) | "MergeSkipped" >> beam.Flatten()]
        return {"images": readable, "skipped": skipped[0]}
