"""Any other filesystem Beam knows (``gs://``, ``hdfs://`` ...) as a :class:`~mnist_batch.runstore.storage.Storage`.

Beam's ``FileSystems.match`` treats ``*``, ``?`` and ``[`` as glob characters everywhere in a
path, so every path is escaped (:func:`glob_escape`): a folder named ``batch[1]`` never matches
``batch1``. One object appears whole when its stream is closed (so :meth:`BeamStorage.write_atomic`
is atomic); :meth:`BeamStorage.create_exclusive` is a check then a write (another writer can slip in
between: such a store is not safe for two launches at once; see deploy/README.md).
"""

from __future__ import annotations

import io
from typing import IO, Any

from apache_beam.io.filesystems import FileSystems

from mnist_batch.files import GLOB_CHARS, glob_escape  # noqa: F401 -- re-exported (they live in files.py, Beam-free)
from mnist_batch.runstore.store import Storage


class BeamStorage(Storage):
    """A remote filesystem reached through Beam's ``FileSystems`` (the options Beam was given)."""

    def __init__(self, options: dict[str, Any] | None) -> None:
        self._options = options

    def describe(self) -> str:
        return "Beam's filesystems"

    def exists(self, uri: str) -> bool:
        return FileSystems.exists(uri)

    def list_files(self, folder: str) -> list[str]:
        pattern = glob_escape(folder.rstrip("/")) + "/**"
        try:
            result = FileSystems.match([pattern])[0]
        except Exception:  # noqa: BLE001 -- Beam raises BeamIOError for a missing prefix: no files
            return []
        return sorted(m.path for m in result.metadata_list)

    def any_under(self, folder: str) -> bool:
        pattern = glob_escape(folder.rstrip("/")) + "/**"
        return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)

    def rename(self, src: str, dst: str) -> None:
        FileSystems.rename([src], [dst])

    def delete_files(self, uris: list[str]) -> None:
        FileSystems.delete(uris)

    def delete_file(self, uri: str) -> None:
        if FileSystems.exists(uri):
            FileSystems.delete([uri])

    def read_bytes(self, uri: str) -> bytes:
        with FileSystems.open(uri) as f:
            return f.read()

    def read_at_most(self, uri: str, limit: int) -> bytes:
        with FileSystems.open(uri) as f:
            return f.read(limit)

    def read_tail(self, uri: str, size: int) -> tuple[bytes, int]:
        with FileSystems.open(uri) as f:
            if getattr(f, "seekable", lambda: False)():
                try:
                    whole = f.seek(0, io.SEEK_END)
                    f.seek(max(0, whole - size))
                    return f.read(), whole
                except (OSError, io.UnsupportedOperation, ValueError):
                    f.seek(0)
            data = f.read()
        return data[-size:], len(data)

    def open_write(self, uri: str) -> IO[bytes]:
        return FileSystems.create(uri)

    def write_atomic(self, uri: str, data: bytes) -> None:
        with FileSystems.create(uri) as f:  # an object store publishes the object when it is closed
            f.write(data)

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        if FileSystems.exists(uri):
            return False
        self.write_atomic(uri, data)
        return True

    def missing(self, uri: str, exc: BaseException) -> bool:
        """Beam's "not found" is a ``BeamIOError`` like any other failure: asked again, only a file that
        a second look does not find counts (a second failure is not "not found": unknown)."""
        if isinstance(exc, FileNotFoundError):
            return True
        try:
            return not FileSystems.exists(uri)
        except Exception:  # noqa: BLE001 -- the store failed again: unknown
            return False
