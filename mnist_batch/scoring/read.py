"""From ``--input`` values to a reshuffled PCollection of readable image files.

``--input`` takes, on any Beam filesystem:

* a folder -- every file under it, recursively (``DIR/**``); on an object store with or without
  its trailing ``/`` (``s3://b/scans`` names no object but has keys under ``scans/``);
* a glob -- ``*`` stays inside one folder, ``**`` crosses folders;
* one file;
* ``@LIST`` -- a text file with one folder / glob / file per line (``#`` comments).

A folder or file that exists is taken literally: glob characters in its name (``batch[1]``,
``what?``) are escaped before matching. Only a value that names no existing path is a
pattern (write ``[[]`` for a literal ``[`` inside a pattern).

Every pattern must match at least one file (checked before the pipeline runs, and again by
``MatchAll`` with ``EmptyMatchTreatment.DISALLOW`` for remote patterns); an empty match is an
error naming it. Local patterns are listed by :func:`~mnist_batch.scoring.listing.list_local`
(in :class:`~mnist_batch.scoring.matching.ListLocalFilesFn`, on the workers), which accounts for
every entry it meets (broken symlinks, loops, unreadable folders, this tool's outputs: skipped
with a reason); remote ones by Beam's ``MatchAll``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mnist_batch.files import is_remote, local_path
from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import describe, root_cause
from mnist_batch.runstore.fs import GLOB_CHARS, glob_escape, storage_for
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.listing import list_local


def expand_input(spec: str) -> list[str]:
    """One ``--input`` value -> Beam match patterns (local paths made absolute)."""
    if spec.startswith("@"):
        uri = spec[1:]
        try:
            lines = fs.read_text(uri).splitlines()
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
    if is_remote(spec):
        if spec.endswith("/"):
            return [glob_escape(spec) + "**"]
        if any(c in spec for c in GLOB_CHARS) and fs.exists(spec):
            return [glob_escape(spec)]  # an object whose name holds glob characters
        if remote_folder(spec):
            return [glob_escape(spec) + "/**"]  # s3://b/scans as s3://b/scans/, like a local folder
        return [spec]
    path = os.path.abspath(os.path.expanduser(local_path(spec)))
    if os.path.isdir(path):
        return [os.path.join(glob_escape(path), "**")]
    if os.path.lexists(path):
        return [glob_escape(path)]  # one file, its name taken literally
    return [path]  # not a path that exists: a pattern, as the user wrote it


def remote_folder(spec: str) -> bool:
    """Whether ``spec`` (no trailing ``/``, no glob) names no object but has keys under ``spec/``:
    a folder of an object store, which is read like a local folder. An object of that very name
    wins (it is read alone). S3: a ``HEAD`` and one ``LIST`` asking for one key, through the shared
    client; other object stores: Beam's match, limited to one result. A store that cannot be asked
    (no credentials for it here, unreachable): False, the value is taken as written, as before.
    """
    if any(c in spec for c in GLOB_CHARS):
        return False
    store = storage_for(spec)
    try:
        return not store.exists(spec) and store.any_under(spec)
    except Exception:  # noqa: BLE001 -- cannot be asked: taken as written; matching it says why, in one line
        return False


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """All ``--input`` values -> de-duplicated match patterns, in order."""
    patterns: list[str] = []
    for spec in specs:
        for pattern in expand_input(spec):
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def folder_prefix(pattern: str) -> str | None:
    """``s3://b/scans/`` for the pattern of a folder (``s3://b/scans/**``, no other glob) on a store that
    lists folders itself (S3: :attr:`~mnist_batch.runstore.storage.Storage.lists_folders`), else None.

    Such a pattern matches every key under the prefix, so one ``LIST`` asking for one key through
    the shared client answers whether it matches; Beam's match would make a client of its own and
    fetch and parse a whole page of up to 1,000 keys (about 0.5 s for a folder of 1,000 files or more here).
    """
    if not (is_remote(pattern) and pattern.endswith("/**") and storage_for(pattern).lists_folders):
        return None
    prefix = pattern[:-2]
    return None if any(c in prefix for c in GLOB_CHARS) else prefix


def check_patterns_match(patterns: Sequence[str]) -> None:
    """Fails fast, before the pipeline starts, on a pattern that matches nothing.

    Only the first match of each pattern is listed, so this is cheap on large buckets. For a
    local pattern, a skipped entry (a broken symlink, an unreadable folder, ...) counts as a
    match: the run then reports it in ``skipped_by_reason``.

    Raises:
      ScoringError: naming the pattern.
    """
    for pattern in patterns:
        if not is_remote(pattern):
            if next(iter(list_local(pattern)), None) is None:
                raise ScoringError(f"--input: {pattern} matches no files")
            continue
        prefix = folder_prefix(pattern)
        if prefix is not None:
            try:
                found = storage_for(prefix).any_under(prefix)
            except Exception as exc:  # the store's errors (botocore's): the pattern cannot be listed
                raise ScoringError(f"--input: cannot list {pattern} ({type(exc).__name__}: {exc})") from exc
            if not found:
                raise ScoringError(f"--input: {pattern} matches no files")
            continue
        from apache_beam.io.filesystem import BeamIOError  # a remote glob: Beam's filesystems (Beam-free otherwise)
        from apache_beam.io.filesystems import FileSystems

        try:
            result = FileSystems.match([pattern], limits=[1])[0]
        except BeamIOError as exc:
            raise ScoringError(f"--input: cannot list {pattern} ({describe(root_cause(exc))})") from exc
        if not result.metadata_list:
            raise ScoringError(f"--input: {pattern} matches no files")
