"""Environment checks of a scoring run, before any model or input file is read.

A run that cannot write its outputs, or names a runner Beam does not know, used to fail only
once the pipeline ran (a traceback of a few hundred lines). :func:`check_environment` fails it
at once with one :class:`~mnist_batch.scoring.errors.ScoringError` line (exit 2), and leaves
nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Sequence

from mnist_batch.files import is_remote, local_path
from mnist_batch.runstore import fs
from mnist_batch.scoring.errors import ScoringError

PROBE_PREFIX = ".mnist_batch_probe_"


def first_missing_folder(path: str) -> str | None:
    """The topmost folder of ``path`` that does not exist yet (None when ``path`` exists)."""
    missing = None
    current = os.path.abspath(path)
    while not os.path.exists(current):
        missing = current
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return missing


def check_local_writable(path: str) -> None:
    """Creates ``path`` (and its parents) if needed, then creates and deletes a probe file in it.

    Folders it created for the probe are removed again while empty, so a run refused later leaves no
    trace; a folder another launch has started to fill in the meantime (two launches into a new root
    at once) is left as it is.

    Raises:
      ScoringError: naming the folder and the operating system's reason.
    """
    created = first_missing_folder(path)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ScoringError(f"--output {path}: cannot write there ({exc.strerror or type(exc).__name__})") from exc
    finally:
        if created is not None:
            remove_empty_folders(os.path.abspath(path), created)


def remove_empty_folders(path: str, top: str) -> None:
    """``path`` and its parents up to ``top``, each removed only while empty (never another launch's files)."""
    current = path
    while True:
        try:
            os.rmdir(current)
        except OSError:
            return  # not empty (someone else's now), or gone already
        if current == top:
            return
        current = os.path.dirname(current)


def check_remote_writable(uri: str) -> None:
    """Creates and deletes a probe object under ``uri`` through the storage interface.

    Raises:
      ScoringError: naming the output and the store's reason.
    """
    probe = fs.join(uri, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    try:
        fs.write_atomic(probe, "probe")
        fs.delete_file(probe)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ScoringError(f"--output {uri}: cannot write there ({type(exc).__name__}: {reason})") from exc


def check_output_writable(uri: str) -> None:
    """Fails fast when the output folder (local or any Beam filesystem) cannot be written.

    Raises:
      ScoringError: one line naming the output and why.
    """
    if is_remote(uri):
        check_remote_writable(uri)
    else:
        check_local_writable(local_path(uri))


def check_runner(name: str) -> None:
    """Fails fast on a runner Beam cannot create (unknown name, missing extra).

    Resolves the name (:attr:`ScoreSettings.runner <mnist_batch.scoring.options.ScoreSettings.runner>`)
    with ``apache_beam.runners.create_runner``, what ``beam.Pipeline`` does with it, without building
    a pipeline or contacting any service.

    Raises:
      ScoringError: one line naming the runner and Beam's reason.
    """
    from apache_beam.runners import create_runner

    try:
        create_runner(name)
    except (ValueError, ImportError, AttributeError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ScoringError(f"--runner {name}: Beam cannot run it ({reason})") from exc


def check_buckets(places: Sequence[tuple[str, str]]) -> None:
    """Every bucket named answers (S3: a ``HEAD`` of it), before any file is read.

    Args:
      places: ``(option, uri)`` pairs, e.g. ``("--input", "s3://b/scans/")``.

    Raises:
      ScoringError: one line naming the option, the bucket and why (wrong credentials, no such bucket).
    """
    from mnist_batch.runstore import fs
    from mnist_batch.runstore.errors import RunStoreError

    seen = set()
    for option, uri in places:
        bucket = uri.split("://", 1)[-1].split("/", 1)[0] if is_remote(uri) else None
        if bucket is None or (uri.split("://", 1)[0], bucket) in seen:
            continue
        seen.add((uri.split("://", 1)[0], bucket))
        try:
            fs.check_reachable(uri, f"{option} {uri}")
        except RunStoreError as exc:
            raise ScoringError(str(exc)) from exc


def check_places_reach_workers(runner: str, places: Sequence[tuple[str, str]]) -> None:
    """Refuses a path on this machine's disk for a job whose workers run elsewhere (a cluster).

    Raises:
      ScoringError: naming the first such option and path, and what to do instead.
    """
    for flag, uri in places:
        if not is_remote(uri):
            raise ScoringError(
                f"{flag} {uri}: a path on this machine, which the workers of {runner} (on other hosts) cannot "
                "read; put it in the bucket (s3://...) or run the job's workers here (--environment_type LOOPBACK)"
            )


def check_environment(
    output: str,
    runner: str | None,
    places: Sequence[tuple[str, str]] = (),
    *,
    workers_elsewhere: bool = False,
    labels_csv: str | None = None,
) -> None:
    """All the environment checks, in order: the runner, that the workers can read every place (a
    cluster), the buckets named, then the output.

    Args:
      output: ``--output``.
      runner: the runner's name (``ScoreSettings.runner``); None for a job run without Beam (the
        in-process engine), whose runner is not checked.
      places: the other places the run reads (``("--model", uri)``, ``("--input", uri)`` ...), whose
        buckets are checked.
      workers_elsewhere: the job's workers cannot read this machine's disk
        (``not ScoreSettings.workers_see_this_disk``): every place must be remote, the entries of an
        ``@LIST`` input and ``labels_csv`` too.
      labels_csv: ``--labels-csv``, if given.

    Raises:
      ScoringError: the first check that fails, as one line.
    """
    if runner is not None:
        check_runner(runner)
    if workers_elsewhere:
        from mnist_batch.scoring.read import expand_inputs  # an @LIST is read here, its entries checked

        listed = [(f, p) for f, v in places for p in (expand_inputs([v]) if v.startswith("@") else [v])]
        labels = [("--labels-csv", labels_csv)] if labels_csv else []
        check_places_reach_workers(runner, [("--output", output), *listed, *labels])
    check_buckets([("--output", output), *places])
    check_output_writable(output)
