"""The local disk (and ``file://`` URIs) as a :class:`~mnist_batch.runstore.storage.Storage`, through :mod:`os`.

What is atomic here (the run store's commit relies on it; see deploy/README.md): ``rename`` of a
file or a folder, :meth:`LocalStorage.write_atomic` (temp file + ``os.replace``),
:meth:`LocalStorage.create_exclusive` (the data written aside, then ``link``: exactly one caller
wins and the file is whole when it appears; ``O_CREAT | O_EXCL`` without hard links) and, on Linux,
:func:`swap` of two folders (``renameat2(RENAME_EXCHANGE)``; elsewhere three renames).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import uuid
from typing import IO

from mnist_batch.files import LOCAL_SCHEME, local_path
from mnist_batch.runstore.store import Storage


def _fsync_write(f: IO[bytes], data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


class LocalStorage(Storage):
    """Plain paths and ``file://`` URIs (names come back as they were asked)."""

    remote = False

    def describe(self) -> str:
        return "the local disk"

    def exists(self, uri: str) -> bool:
        return os.path.lexists(local_path(uri))

    def list_files(self, folder: str) -> list[str]:
        found = []
        scheme = LOCAL_SCHEME if folder.startswith(LOCAL_SCHEME) else ""
        for dirpath, _, filenames in os.walk(local_path(folder)):
            found.extend(scheme + os.path.join(dirpath, name) for name in filenames)
        return sorted(found)

    def list_dir(self, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(local_path(folder)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def makedirs(self, folder: str) -> None:
        os.makedirs(local_path(folder), exist_ok=True)

    def remove_empty_dir(self, folder: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(local_path(folder))

    def rename(self, src: str, dst: str) -> None:
        src, dst = local_path(src), local_path(dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(src, dst)

    def delete_tree(self, folder: str) -> None:
        folder = local_path(folder)
        if os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder)
        elif os.path.lexists(folder):
            os.remove(folder)

    def delete_files(self, uris: list[str]) -> None:
        for uri in uris:
            self.delete_file(uri)

    def delete_file(self, uri: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(local_path(uri))

    def read_bytes(self, uri: str) -> bytes:
        with open(local_path(uri), "rb") as f:
            return f.read()

    def read_at_most(self, uri: str, limit: int) -> bytes:
        with open(local_path(uri), "rb") as f:
            return f.read(limit)

    def read_tail(self, uri: str, size: int) -> tuple[bytes, int]:
        with open(local_path(uri), "rb") as f:
            whole = f.seek(0, os.SEEK_END)
            f.seek(max(0, whole - size))
            return f.read(), whole

    def local_file(self, uri: str) -> str | None:
        return local_path(uri)

    def open_write(self, uri: str) -> IO[bytes]:
        path = local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")

    def write_atomic(self, uri: str, data: bytes) -> None:
        uri = local_path(uri)
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        tmp = f"{uri}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                _fsync_write(f, data)
            os.replace(tmp, uri)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        """The data written to a private temporary file first, then hard-linked to ``uri`` (``link``
        fails when ``uri`` exists), so of two callers exactly one wins and a reader never sees the file
        before its data is whole; where the filesystem has no hard links, one ``O_CREAT | O_EXCL`` then
        the write."""
        uri = local_path(uri)
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        linked = _link_new(uri, data)
        if linked is not None:
            return linked
        try:
            fd = os.open(uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            _fsync_write(f, data)
        return True


def _link_new(path: str, data: bytes) -> bool | None:
    """Writes ``data`` to a temporary file beside ``path`` and hard-links it there: True when this call
    made ``path``, False when it existed; None when the filesystem cannot hard-link (the caller falls back)."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            _fsync_write(f, data)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            return None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


RENAME_EXCHANGE = 2  # <linux/fs.h>: swap the two names atomically
AT_FDCWD = -100  # paths relative to the working directory, as os.rename takes them


def _renameat2():
    """libc's ``renameat2`` (glibc >= 2.28), or None where the C library has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()


def exchange(a: str, b: str) -> bool:
    """Swaps two local paths in one ``renameat2(RENAME_EXCHANGE)``; False where unsupported.

    Unsupported: no ``renameat2`` in the C library, or a kernel or filesystem without
    ``RENAME_EXCHANGE`` (``ENOSYS``, ``EINVAL``, ``ENOTSUP``). Other failures raise ``OSError``.
    """
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def swap(a: str, b: str) -> bool:
    """Swaps two existing local folders: afterwards ``a`` holds what ``b`` held and ``b`` what ``a`` held.

    A reader resolving ``b`` sees its old content or its new one, never nothing: one atomic
    ``renameat2(RENAME_EXCHANGE)`` on Linux. Where that is unsupported, three renames
    (``b`` aside, ``a`` to ``b``, the old ``b`` to ``a``) leave ``b`` missing for the
    microseconds between the first two. Returns True when the swap was atomic.
    """
    a, b = local_path(a), local_path(b)
    if exchange(a, b):
        return True
    aside = f"{b}.swap-{uuid.uuid4().hex}"
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
    return False
