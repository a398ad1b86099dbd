"""``--engine``: which engine runs a scoring launch, the Beam job or the in-process job, and why.

``auto`` (the default) runs a launch in process when it needs nothing only Beam gives:

* no Beam option at all (so the runner is the default DirectRunner, in memory, on this machine);
* every place on this machine's disk: ``--model``, ``--input`` (and the entries of an ``@LIST``),
  ``--output``, ``--labels-csv`` (not ``s3://`` or another Beam filesystem);
* the flat layout (``--layout runs``: manifest rows, the incremental history: the Beam job);
* when ``$MNIST_BATCH_INPROCESS_MAX_FILES`` is set, at most that many image files, counted by the
  same listing, which stops one file past the limit. Unset (the default), any number: the job lists
  as it scores, with memory flat at any size (docs/benchmarks.md, "One process at a million files").

Anything else runs on Beam, the reason said in the summary. ``--engine inprocess`` refuses a launch
that needs Beam (one line, exit 2), never running it differently; ``--engine beam`` always runs Beam.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

from mnist_batch.config import ScoreConfig
from mnist_batch.files import is_remote, local_path
from mnist_batch.scoring.errors import ScoringError
from mnist_batch.scoring.listing import Listed, ListedFile, classify_listing, folder_id
from mnist_batch.scoring.options import INPROCESS_MAX_FILES_ENV, ScoreSettings
from mnist_batch.scoring.read import expand_inputs

BEAM = "beam"
INPROCESS = "inprocess"


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """The engine that runs a launch (``beam`` or ``inprocess``) and why, in a few words."""

    engine: str
    reason: str
    listing: tuple[Listed, ...] | None = dataclasses.field(default=None, compare=False, repr=False)
    """What ``auto`` listed to count the files (in process only): the job scores these, not a second listing."""


def max_files() -> int | None:
    """The most image files ``--engine auto`` runs in process (``$MNIST_BATCH_INPROCESS_MAX_FILES``; None: no limit)."""
    value = os.environ.get(INPROCESS_MAX_FILES_ENV, "")
    try:
        return int(value) if value.strip() else None
    except ValueError as exc:
        raise ScoringError(f"{INPROCESS_MAX_FILES_ENV}={value!r}: not a whole number of files") from exc


def needs_beam(settings: ScoreSettings) -> str | None:
    """Why only the Beam job can run ``settings`` (None: the in-process job can)."""
    if settings.beam_args:
        return f"Beam options given ({' '.join(settings.beam_args)[:80]})"
    if settings.run.layout != "flat":
        return f"--layout {settings.run.layout} (the in-process engine writes the flat layout)"
    config = settings.config
    places = [("--model", config.model), ("--output", config.output), ("--labels-csv", config.labels_csv)]
    places += [("--input", spec) for spec in config.inputs]
    for flag, place in places:
        if place and is_remote(place.removeprefix("@")):
            return f"{flag} {place} is not on this machine's disk"
    return None


def local_patterns(settings: ScoreSettings) -> list[str]:
    """The match patterns of ``--input`` (an ``@LIST`` read), each on this machine's disk.

    Raises:
      ScoringError: an ``@LIST`` that cannot be read, or that names a remote place.
    """
    patterns = expand_inputs(settings.config.inputs)
    remote = [p for p in patterns if is_remote(p)]
    if remote:
        raise ScoringError(f"--input {remote[0]} is not on this machine's disk")
    return patterns


def list_inputs(patterns: Sequence[str], config: ScoreConfig) -> Iterator[Listed]:
    """Every entry the patterns list on this disk, as the Beam job's ``MatchImageFiles`` lists them on
    the in-memory runner: each image file once (a path two patterns meet: once, as
    ``DropDuplicatePaths``), every other entry a skipped ``(path, reason)``; the output folder's own
    files skipped as the tool's. Lazily, entry by entry: one pattern lists each path once, so only two
    or more patterns keep the paths seen (memory grows with the files then)."""
    return list_entries(patterns, config.extensions, config.output)


def list_entries(patterns: Sequence[str], extensions: Sequence[str], output: str) -> Iterator[Listed]:
    """:func:`list_inputs` of ``--extensions`` and ``--output`` (what the progress count's process gets)."""
    own = [i for i in [folder_id(os.path.abspath(local_path(output)))] if i is not None]
    extensions = frozenset(e.lower() for e in extensions)
    if len(patterns) == 1:  # each path once already: no set, no second look at each item
        yield from classify_listing(patterns[0], extensions, own, metadata=False)
        return
    seen: set[str] = set()
    for pattern in patterns:
        for item in classify_listing(pattern, extensions, own, metadata=False):  # the job reads no size or time
            if isinstance(item, ListedFile):
                if item.path in seen:
                    continue
                seen.add(item.path)
            yield item


def listing_up_to(settings: ScoreSettings, limit: int) -> tuple[int, tuple[Listed, ...] | None]:
    """The image files the job would score, counted by its listing up to ``limit + 1`` (then it
    stops), and the listing itself when it held at most ``limit`` (else None).

    Raises:
      ScoringError: an ``@LIST`` that cannot be read, or that names a remote place.
    """
    items: list[Listed] = []
    count = 0
    for item in list_inputs(local_patterns(settings), settings.config):
        if isinstance(item, ListedFile):
            count += 1
            if count > limit:
                return count, None
        items.append(item)
    return count, tuple(items)


def count_images(settings: ScoreSettings, limit: int) -> int:
    """The image files the job would score, counted by its listing, up to ``limit + 1`` (then it stops).

    Raises:
      ScoringError: an ``@LIST`` that cannot be read, or that names a remote place.
    """
    return listing_up_to(settings, limit)[0]


def in_process_or_why(settings: ScoreSettings) -> EngineChoice | str:
    """``auto``'s choice for a launch that needs no Beam option or remote place: in process, or why not
    (an ``@LIST`` naming a bucket or unreadable, more files than ``$MNIST_BATCH_INPROCESS_MAX_FILES``)."""
    limit = max_files()
    try:
        if limit is None:
            local_patterns(settings)
            return EngineChoice(INPROCESS, "local files, no Beam option, flat layout")
        count, listing = listing_up_to(settings, limit)
    except ScoringError as exc:
        return str(exc)
    if count > limit:
        return f"more than {limit:,} image files (${INPROCESS_MAX_FILES_ENV})"
    return EngineChoice(INPROCESS, f"{count:,} image files, at most {limit:,}", listing)


def choose_engine(settings: ScoreSettings) -> EngineChoice:
    """Which engine runs ``settings`` (``settings.engine``: ``auto``, ``beam`` or ``inprocess``).

    Raises:
      ScoringError: ``--engine inprocess`` for a launch only Beam can run (one line, naming why).
    """
    if settings.engine == BEAM:
        return EngineChoice(BEAM, "--engine beam")
    reason = needs_beam(settings)
    if reason is None and settings.engine == "auto":
        choice = in_process_or_why(settings)
        if isinstance(choice, EngineChoice):
            return choice
        reason = choice
    if settings.engine == INPROCESS:
        if reason is None:
            try:
                local_patterns(settings)  # an @LIST naming a bucket: Beam's
            except ScoringError as exc:
                if "not on this machine's disk" in str(exc):
                    reason = str(exc)  # (a list that cannot be read: the job says so, as the Beam job does)
        if reason is not None:
            raise ScoringError(f"--engine inprocess cannot run this launch: {reason}; use --engine beam or auto")
        return EngineChoice(INPROCESS, "--engine inprocess")
    return EngineChoice(BEAM, reason)
