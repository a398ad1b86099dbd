"""File operations on any store, by path: each call is served by the store :func:`storage_for` chose.

The functions here are what the run store, the listing and the reads call; which store serves a
path (local disk, S3, another Beam filesystem) is decided once per scheme in
:mod:`mnist_batch.runstore.storage`, and what is atomic where is said in each store's module
(:mod:`~mnist_batch.runstore.local`, :mod:`~mnist_batch.runstore.s3store`,
:mod:`~mnist_batch.runstore.beamfs`). Paths are literal: a user's path is never read as a glob
pattern. A ``file://`` URI is local (:func:`mnist_batch.files.is_remote`).

Settings: :func:`configure` (the launch's Beam options, or none: the environment, ``AWS_*``);
:func:`configure_worker` on a job's workers (:class:`mnist_batch.scoring.storage_fn.StorageDoFn`).
"""

from __future__ import annotations

import os

from mnist_batch.files import GLOB_CHARS, FileTooLargeError, glob_escape, is_remote
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.local import exchange, swap
from mnist_batch.runstore.storage import Storage, configure, configure_worker, settings_of, storage_for

__all__ = [
    "GLOB_CHARS",
    "Storage",
    "configure",
    "configure_worker",
    "exchange",
    "glob_escape",
    "is_remote",  # the package's one answer (mnist_batch.files), as the run store's callers know it
    "settings_of",
    "storage_for",
    "swap",
]


def check_reachable(uri: str, what: str) -> None:
    """Raises a one-line :class:`RunStoreError` when ``uri``'s bucket cannot be used (S3: a ``HEAD``
    of the bucket: wrong credentials, no such bucket, unreachable endpoint); nothing for other places.

    Args:
      uri: any path or URI.
      what: how the message names it (``--output s3://b/runs``).
    """
    reason = storage_for(uri).check_reachable(uri)
    if reason is not None:
        raise RunStoreError(f"{what}: {reason}")


def join(base: str, *parts: str) -> str:
    if is_remote(base):  # what Beam's object-store filesystems do
        for part in parts:
            base = base.rstrip("/") + "/" + part.lstrip("/")
        return base
    return os.path.join(base, *parts)  # what Beam's local filesystem does, for file:// URIs too


def parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def exists(uri: str) -> bool:
    return storage_for(uri).exists(uri)


def list_files(folder: str) -> list[str]:
    """Every file under ``folder``, recursively, sorted; ``[]`` when it does not exist."""
    return storage_for(folder).list_files(folder)


def list_dir(folder: str) -> list[str]:
    """Names of the entries (files and folders) directly in ``folder``, sorted; ``[]`` if missing."""
    return storage_for(folder).list_dir(folder)


def makedirs(folder: str) -> None:
    """Creates a local folder and its parents (object stores have no folders: nothing to do)."""
    storage_for(folder).makedirs(folder)


def remove_empty_dir(folder: str) -> None:
    """Removes a local folder if it is empty (object stores have no folders: nothing to do)."""
    storage_for(folder).remove_empty_dir(folder)


def rename(src: str, dst: str) -> None:
    """Moves a file (or, locally, a whole folder) to ``dst``; ``dst``'s parents are created."""
    storage_for(src).rename(src, dst)


def delete_tree(folder: str) -> None:
    """Deletes ``folder`` and everything under it; nothing to do when it does not exist."""
    storage_for(folder).delete_tree(folder)


def delete_file(uri: str) -> None:
    """Deletes one file; nothing to do when it does not exist."""
    storage_for(uri).delete_file(uri)


def read_bytes(uri: str) -> bytes:
    return storage_for(uri).read_bytes(uri)


def read_at_most(uri: str, max_bytes: int) -> bytes:
    """``uri``'s bytes, at most ``max_bytes`` read (``max_bytes + 1`` asked for): more is
    :class:`~mnist_batch.files.FileTooLargeError`."""
    data = storage_for(uri).read_at_most(uri, max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(f"file has more than --max-file-bytes {max_bytes:,} bytes")
    return data


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_atomic(uri: str, text: str) -> None:
    """Writes ``text`` so that a reader sees the old file or the whole new one, never a part."""
    storage_for(uri).write_atomic(uri, text.encode("utf-8"))


def create_exclusive(uri: str, text: str) -> bool:
    """Creates ``uri`` with ``text`` unless it exists; True when this call created it.

    Local disks and S3: of two callers exactly one wins, and the file is whole when it appears; other
    object stores: a check then a write (best effort; see :mod:`~mnist_batch.runstore.beamfs`).
    """
    return storage_for(uri).create_exclusive(uri, text.encode("utf-8"))
