"""Reading a file safely: only regular files, never more than a limit, never blocking.

Pure Python (no Beam, no TensorFlow): the scoring pipeline and ``mnist-batch predict`` read
image files through :func:`read_local`, so a FIFO, a device, a link to ``/dev/urandom`` or a
multi-GB file named ``*.png`` is refused with a reason instead of hanging or filling memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Iterator

from mnist_batch.config import DEFAULT_MAX_FILE_BYTES

LOCAL_SCHEME = "file://"

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "FileTooLargeError",
    "NotRegularFileError",
    "check_file_size",
    "check_regular",
    "escape_path",
    "file_kind",
    "open_local",
    "read_at_most",
    "read_local",
    "replaced_atomically",
    "unescape_path",
]

ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")
"""How a byte that is not valid UTF-8 in a file name is written in ``path`` columns: ``\\xHH``."""


def escape_path(path: str) -> str:
    """A listed path as a valid UTF-8 string: each byte that is not UTF-8 becomes ``\\xHH``.

    Python lists such a name with :func:`os.fsdecode`'s surrogate escapes (byte ``0xff`` ->
    ``'\\udcff'``), which no Parquet writer, Beam coder or reader can encode; ``x\\xff.png``
    (four characters for the byte) is what every row, key and message carries instead. Names
    that are valid UTF-8 are unchanged. :func:`unescape_path` finds the file again.
    """
    if path.isascii() or not any("\udc80" <= c <= "\udcff" for c in path):  # isascii: C speed, most paths
        return path
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in path)


def unescape_path(path: str) -> str:
    """The local path :func:`escape_path` made ``path`` from (the path itself when it exists as written)."""
    if "\\x" not in path or os.path.lexists(path):
        return path
    return ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), path)


FILE_KINDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


class NotRegularFileError(OSError):
    """A matched path names a FIFO, a device, a socket or a folder: never opened for reading."""


class FileTooLargeError(OSError):
    """A file over ``--max-file-bytes``: refused from its size, or once that many bytes were read."""


GLOB_CHARS = "*?["

# An escaped "[" ("[[]") becomes the regex "[[]", which Python flags as a possible future nested
# set; it is a one-character class today and Beam has no other way to quote "[".
warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)


def glob_escape(path: str) -> str:
    """``path`` as a Beam match pattern that matches exactly that path (``[`` -> ``[[]``, ...)."""
    return "".join(f"[{c}]" if c in GLOB_CHARS else c for c in path)


def is_remote(uri: str) -> bool:
    """True for a URI of another filesystem than the local one (``gs://``, ``s3://``, ...).

    The one answer for the whole package: a plain path and a ``file://`` URI are local
    (read through :mod:`os`, :func:`local_path` gives the path); the rest go through Beam's
    filesystems.
    """
    return "://" in uri and not uri.startswith(LOCAL_SCHEME)


def local_path(uri: str) -> str:
    """A local path or ``file://`` URI -> the path (``file:///a/b`` -> ``/a/b``)."""
    return uri.removeprefix(LOCAL_SCHEME)


def open_local(path: str) -> int:
    """Opens a local file for reading without blocking; its descriptor, for the caller to close (one
    place, so tests can refuse mode-000 files as root).

    ``O_NONBLOCK``: opening a FIFO does not wait for a writer (the caller's ``fstat`` then
    refuses it); it changes nothing for regular files.
    """
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def file_kind(mode: int) -> str:
    """``"FIFO"``, ``"character device"``, ... for ``st_mode``; ``"special file"`` when none fits."""
    return next((name for test, name in FILE_KINDS if test(mode)), "special file")


def check_regular(mode: int) -> None:
    """Raises NotRegularFileError unless ``mode`` is a regular file's."""
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"not a regular file ({file_kind(mode)})")


def check_file_size(size: int | None, max_bytes: int) -> None:
    """Raises FileTooLargeError when ``size`` (from metadata) is over ``max_bytes``."""
    if size is not None and size > max_bytes:
        raise FileTooLargeError(f"file is {size:,} bytes, over --max-file-bytes {max_bytes:,}")


def read_at_most(f, max_bytes: int, expected: int | None = None) -> bytes:
    """Reads at most ``max_bytes + 1`` bytes of ``f``, a file object or an open descriptor (plain
    ``os.read`` calls, no buffered file object: :func:`read_local` 6.9-7.0 -> 4.3-4.7 µs a file on MNIST
    PNGs, ``benchmarks/bench_rows.py``);
    more than ``max_bytes`` is FileTooLargeError (the file grew).

    With ``expected`` (the size ``fstat`` gave), reads that many bytes plus one first and goes on
    only when the file turned out longer: a read sized for ``max_bytes`` costs a buffer of that
    size per file (measured: 27 us of a 120 us decode for a 64 MiB limit).
    """
    fd = f if isinstance(f, int) else None
    target, chunks, size = (max_bytes if expected is None else min(expected, max_bytes)) + 1, [], 0
    while size < target:
        data = os.read(fd, target - size) if fd is not None else f.read(target - size)
        if not data:
            break  # the end of the file
        chunks.append(data)
        size += len(data)
        if size == target <= max_bytes:
            target = max_bytes + 1  # it grew since fstat: read on, up to the limit
    if size > max_bytes:
        raise FileTooLargeError(f"file has more than --max-file-bytes {max_bytes:,} bytes (it grew while read)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_local(path: str, max_bytes: int) -> bytes:
    """A local file's bytes: ``stat`` first (a FIFO or device is never opened), open without
    blocking, ``fstat`` the descriptor (the path may have been swapped), then read at most
    ``max_bytes + 1`` bytes.

    A plain read skips the filesystem lookup and compression detection Beam does per file
    (measured: about 4 % of a local run's CPU).
    """
    path = unescape_path(path)
    st = os.stat(path)
    check_regular(st.st_mode)
    check_file_size(st.st_size, max_bytes)
    fd = open_local(path)
    try:
        st = os.fstat(fd)
        check_regular(st.st_mode)
        check_file_size(st.st_size, max_bytes)
        return read_at_most(fd, max_bytes, st.st_size)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary file beside ``path`` to write; on success it gets normal permissions
    (``0666 & ~umask``; ``mkstemp`` makes 0600) and is renamed onto ``path``, else it is removed.

    Readers see the old file or the new one, never a part. ``suffix`` keeps writers that go by the
    file name (Keras' ``.keras``) happy.

    Raises:
      OSError: the folder cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
