"""The storage interface: what every store offers (:mod:`mnist_batch.runstore.storage` chooses one per URL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO


class Storage:
    """What every store offers; paths are literal (never globs), folders are key prefixes on object stores.

    Attributes:
      conditional: True where the store has versioned conditional writes (S3's ETags), which leases
        use; elsewhere a lease is a file created exclusively.
      remote: False only for the local disk.
      lists_folders: True where :meth:`list_versioned` lists a folder with each file's version
        (S3: one paginated ``LIST`` with ETags); elsewhere Beam's ``MatchAll`` lists remote patterns.
    """

    conditional = False
    remote = True
    lists_folders = False

    def describe(self) -> str:
        """The store for messages: ``the local disk``, ``S3 at http://127.0.0.1:9000``."""
        return type(self).__name__

    def unsupported(self, what: str) -> NotImplementedError:
        """The error of an operation ``what`` this store does not offer (each store overrides what it has)."""
        return NotImplementedError(f"{self.describe()} has no {what}")

    def exists(self, uri: str) -> bool:
        raise self.unsupported("exists")

    def list_files(self, folder: str) -> list[str]:
        """Every file under ``folder``, recursively, sorted; ``[]`` when there is none."""
        raise self.unsupported("list_files")

    def list_dir(self, folder: str) -> list[str]:
        """Names of the entries directly in ``folder`` (files and folders), sorted; ``[]`` if missing."""
        prefix = folder.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/", 1)[0] for p in self.list_files(folder) if p.startswith(prefix)})

    def any_under(self, folder: str) -> bool:
        """Whether any file is under ``folder`` (cheap: at most one listed)."""
        return bool(self.list_files(folder))

    def makedirs(self, folder: str) -> None:
        """Creates a folder and its parents (object stores have none: nothing to do)."""

    def remove_empty_dir(self, folder: str) -> None:
        """Removes a folder if empty (object stores have none: nothing to do)."""

    def rename(self, src: str, dst: str) -> None:
        """Moves a file (locally also a folder) to ``dst``; object stores: a copy then a delete."""
        raise self.unsupported("rename")

    def delete_tree(self, folder: str) -> None:
        """Deletes ``folder`` and everything under it; nothing to do when it does not exist."""
        files = self.list_files(folder)
        if files:
            self.delete_files(files)

    def delete_files(self, uris: list[str]) -> None:
        raise self.unsupported("delete_files")

    def delete_file(self, uri: str) -> None:
        """Deletes one file; nothing to do when it does not exist."""
        raise self.unsupported("delete_file")

    def read_bytes(self, uri: str) -> bytes:
        raise self.unsupported("read_bytes")

    def read_at_most(self, uri: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of ``uri`` (the caller checks whether there were more)."""
        raise self.unsupported("read_at_most")

    def read_tail(self, uri: str, size: int) -> tuple[bytes, int]:
        """The last ``size`` bytes of ``uri`` (all of it when shorter) and its whole length."""
        raise self.unsupported("read_tail")

    def local_file(self, uri: str) -> str | None:
        """The operating system's path of ``uri`` when it is a local file (pyarrow opens it itself)."""
        return None

    def open_write(self, uri: str) -> IO[bytes]:
        """A binary stream whose ``close`` publishes the whole file (object stores: one object)."""
        raise self.unsupported("open_write")

    def write_atomic(self, uri: str, data: bytes) -> None:
        """Writes ``data`` so that a reader sees the old file or the whole new one, never a part."""
        raise self.unsupported("write_atomic")

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        """Creates ``uri`` with ``data`` unless it exists; True when this call created it."""
        raise self.unsupported("create_exclusive")

    def read_versioned(self, uri: str) -> tuple[bytes, str] | None:
        """``(content, version)``, None when absent (stores with :attr:`conditional` only)."""
        raise self.unsupported("conditional requests")

    def create_versioned(self, uri: str, data: bytes) -> str | None:
        """Creates ``uri`` unless it exists: its version, or None when it existed."""
        raise self.unsupported("conditional requests")

    def replace_if(self, uri: str, data: bytes, version: str) -> str | None:
        """Replaces ``uri`` only while it is ``version``: the new version, or None when it changed or went."""
        raise self.unsupported("conditional requests")

    def delete_if(self, uri: str, version: str) -> bool:
        """Deletes ``uri`` only while it is ``version``; True when this call deleted it."""
        raise self.unsupported("conditional requests")

    def missing(self, uri: str, exc: BaseException) -> bool:
        """Whether ``exc``, raised reading ``uri``, means "no such file" (and nothing else)."""
        return isinstance(exc, FileNotFoundError)

    def check_reachable(self, uri: str) -> str | None:
        """Why ``uri``'s bucket cannot be used (one line), or None (nothing to check on most stores)."""
        return None

    def list_versioned(self, folder: str) -> Iterator[tuple[str, int, float, str | None]]:
        """``(uri, size, mtime in seconds, version)`` of every file under ``folder``, in key order."""
        raise self.unsupported("a listing with versions")
