"""From ``--input`` values to a reshuffled PCollection of readable image files.

``--input`` takes, on any Beam filesystem:

* a folder -- every file under it, recursively (``DIR/**``);
* a glob -- ``*`` stays inside one folder, ``**`` crosses folders;
* one file;
* ``@LIST`` -- a text file with one folder / glob / file per line (``#`` comments).

A folder or file that exists is taken literally: glob characters in its name (``batch[1]``,
``what?``) are escaped before matching. Only a value that names no existing path is a
pattern (write ``[[]`` for a literal ``[`` inside a pattern).

Every pattern must match at least one file (checked before the pipeline runs, and again by
``MatchAll`` with ``EmptyMatchTreatment.DISALLOW`` for remote patterns); an empty match is an
error naming it. Local patterns are listed by :func:`~mnist_batch.scoring.listing.list_local`
(in :class:`~mnist_batch.scoring.dofns.ListLocalFilesFn`, on the workers), which accounts for
every entry it meets (broken symlinks, loops, unreadable folders, this tool's outputs: skipped
with a reason); remote ones by Beam's ``MatchAll``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from mnist_batch.scoring.dofns import SKIPPED_TAG, ClassifyMatchFn, ListLocalFilesFn
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.fs import GLOB_CHARS, glob_escape
from mnist_batch.scoring.listing import list_local


def _is_remote(spec: str) -> bool:
    return "://" in spec


def expand_input(spec: str) -> list[str]:
    """One ``--input`` value -> Beam match patterns (local paths made absolute)."""
    if spec.startswith("@"):
        uri = spec[1:]
        try:
            with FileSystems.open(uri) as f:
                lines = io.TextIOWrapper(f, encoding="utf-8").read().splitlines()
        except Exception as exc:
            raise ScoringError(f"--input {spec}: cannot read the list ({type(exc).__name__}: {exc})") from exc
        patterns: list[str] = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                if line.startswith("@"):
                    raise ScoringError(f"--input {spec}: lists cannot include other lists ({line})")
                patterns.extend(expand_input(line))
        if not patterns:
            raise ScoringError(f"--input {spec}: the list names no inputs")
        return patterns
    if _is_remote(spec):
        if spec.endswith("/"):
            return [glob_escape(spec) + "**"]
        if any(c in spec for c in GLOB_CHARS) and FileSystems.exists(spec):
            return [glob_escape(spec)]  # an object whose name holds glob characters
        return [spec]
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        return [os.path.join(glob_escape(path), "**")]
    if os.path.lexists(path):
        return [glob_escape(path)]  # one file, its name taken literally
    return [path]  # not a path that exists: a pattern, as the user wrote it


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """All ``--input`` values -> de-duplicated match patterns, in order."""
    patterns: list[str] = []
    for spec in specs:
        for pattern in expand_input(spec):
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def check_patterns_match(patterns: Sequence[str]) -> None:
    """Fails fast, before the pipeline starts, on a pattern that matches nothing.

    Only the first match of each pattern is listed, so this is cheap on large buckets. For a
    local pattern, a skipped entry (a broken symlink, an unreadable folder, ...) counts as a
    match: the run then reports it in ``skipped_by_reason``.

    Raises:
      ScoringError: naming the pattern.
    """
    for pattern in patterns:
        if not _is_remote(pattern):
            if next(iter(list_local(pattern)), None) is None:
                raise ScoringError(f"--input: {pattern} matches no files")
            continue
        try:
            result = FileSystems.match([pattern], limits=[1])[0]
        except BeamIOError as exc:
            raise ScoringError(f"--input: cannot list {pattern} ({exc})") from exc
        if not result.metadata_list:
            raise ScoringError(f"--input: {pattern} matches no files")


def file_to_tuple(readable: fileio.ReadableFile) -> tuple[str, int, float, str | None]:
    """A ReadableFile as a plain tuple: encoded natively by Beam's coders instead of pickled."""
    meta = readable.metadata
    return (meta.path, meta.size_in_bytes, meta.last_updated_in_seconds, readable._compression)


def tuple_to_file(item: tuple[str, int, float, str | None]) -> fileio.ReadableFile:
    path, size, mtime, compression = item
    return fileio.ReadableFile(FileMetadata(path, size, mtime), compression)


class ReshuffleFiles(beam.PTransform):
    """``Reshuffle`` of ReadableFiles that moves them as plain tuples.

    A ReadableFile has no Beam coder, so a shuffle pickles it (twice per file on the
    DirectRunner, with its size estimate); the tuple ``(path, size, mtime, compression)`` is
    encoded natively, and the same ReadableFile is rebuilt after the shuffle.
    """

    def expand(self, files):
        return (
            files
            | "ToTuples" >> beam.Map(file_to_tuple)
            | "Reshuffle" >> beam.Reshuffle()
            | "ToReadableFiles" >> beam.Map(tuple_to_file)
        )


IN_MEMORY_RUNNERS = (None, "DirectRunner", "direct", "SwitchingDirectRunner")


def needs_reshuffle(options: PipelineOptions | None) -> bool:
    """False only on the in-memory DirectRunner (the default local run), True on every other runner.

    The in-memory DirectRunner runs every stage in one process with one worker, so a
    ``Reshuffle`` has no workers to spread files over and only costs: encoding, grouping and
    re-windowing every file (measured on 50,000 files: 13-16 % of the run's wall time, same
    peak memory; docs/benchmarks.md). Multi-processing, portable (Flink, Spark) and Dataflow
    runs keep it.
    """
    if options is None:
        return False
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    if name not in IN_MEMORY_RUNNERS:
        return True
    return options.view_as(DirectOptions).direct_running_mode not in (None, "in_memory")


class MatchImageFiles(beam.PTransform):
    """Patterns -> ``{"images": ReadableFile, "skipped": (path, reason)}``.

    Local patterns: ``ListLocalFiles`` (:class:`~mnist_batch.scoring.dofns.ListLocalFilesFn`:
    what cannot be listed, and this tool's outputs, go to ``skipped``); remote patterns:
    ``MatchAll`` (empty match disallowed). Then ``ClassifyMatches`` (extension filter; directories,
    other names and files under a remote ``output_dirs`` go to ``skipped``) ->
    ``DropDuplicatePaths`` when several patterns may
    overlap -> ``ReadMatches`` -> ``Reshuffle`` (spreads reading and scoring over workers;
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
        local = [p for p in self._patterns if not _is_remote(p)]
        remote = [p for p in self._patterns if _is_remote(p)]
        matched, skipped = [], []
        if local:
            listed = (
                pbegin
                | "CreateLocalPatterns" >> beam.Create(local)
                | "ListLocalFiles"
                >> beam.ParDo(ListLocalFilesFn(self._output_dirs)).with_outputs(SKIPPED_TAG, main="files")
            )
            matched.append(listed.files)
            skipped.append(listed[SKIPPED_TAG])
        if remote:
            matched.append(
                pbegin
                | "CreatePatterns" >> beam.Create(remote)
                | "MatchAll" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
            )
        if len(matched) > 1:
            matched = [tuple(matched) | "MergeMatches" >> beam.Flatten()]
        classified = matched[0] | "ClassifyMatches" >> beam.ParDo(
            ClassifyMatchFn(self._extensions, self._output_dirs)
        ).with_outputs(SKIPPED_TAG, main="images")
        skipped.append(classified[SKIPPED_TAG])
        images = classified.images
        if len(self._patterns) > 1:
            images = (
                images
                | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
                | "DropDuplicatePaths" >> beam.CombinePerKey(lambda ms: next(iter(ms)))
                | "DropPathKeys" >> beam.Values()
            )
        readable = images | "ReadMatches" >> fileio.ReadMatches()
        if self._reshuffle:
            readable = readable | "Reshuffle" >> ReshuffleFiles()
        if len(skipped) > 1:
            skipped = [tuple(skipped) | "MergeSkipped" >> beam.Flatten()]
        return {"images": readable, "skipped": skipped[0]}
