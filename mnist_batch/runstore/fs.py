"""Literal file operations on any Beam filesystem: a user's path is never read as a glob pattern.

Beam's ``FileSystems.match`` treats ``*``, ``?`` and ``[`` as glob characters everywhere in a
path, and its file sinks match their own output paths as globs, so a folder named
``batch[1]`` would match ``batch1``. Every helper here takes literal paths: local paths go
through :mod:`os` (no globbing at all), remote ones (``gs://``, ``s3://``, ...) through
``FileSystems`` with the path escaped by :func:`glob_escape`. A ``file://`` URI is local
(:func:`mnist_batch.files.is_remote`).

What is atomic where (the run store's commit relies on it; see deploy/README.md):

* local and POSIX network disks: :func:`rename` of a file or a folder, :func:`write_atomic`
  (temp file + ``os.replace``), :func:`create_exclusive` (the text written aside, then ``link``: exactly one
  caller wins and the file is whole when it appears; ``O_CREAT | O_EXCL`` without hard links) and, on Linux,
  :func:`swap` of two folders (``renameat2(RENAME_EXCHANGE)``; elsewhere three renames);
* S3 (and S3-compatible servers), through one shared boto3 client (:mod:`mnist_batch.runstore.s3`;
  Beam's S3 filesystem makes a client per call): one object appears whole when its ``PUT``
  completes (so :func:`write_atomic` is atomic); :func:`create_exclusive` is one conditional
  ``PUT`` (``If-None-Match: *``), so of two callers exactly one wins; a rename is a server-side
  copy then a delete per object;
* GCS and other Beam filesystems: as S3, but :func:`create_exclusive` is a check then a write
  (another writer can slip in between).

Remote filesystems are opened with the options given to :func:`configure` (the scoring launch
passes its Beam options: ``--s3_endpoint_url`` ...; the other commands none, so that the usual
environment applies: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import uuid
import warnings
from typing import Any

from apache_beam.io.filesystems import FileSystems

from mnist_batch.files import LOCAL_SCHEME, is_remote, local_path
from mnist_batch.runstore import s3
from mnist_batch.runstore.errors import RunStoreError

__all__ = ["is_remote"]  # the package's one answer (mnist_batch.files), as the run store's callers know it

GLOB_CHARS = "*?["

# An escaped "[" ("[[]") becomes the regex "[[]", which Python flags as a possible future nested
# set; it is a one-character class today and Beam has no other way to quote "[".
warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)


_configured: dict[str, Any] = {"options": None}


def configure(options: Any = None) -> None:
    """The options every remote filesystem is opened with, in this process.

    A process that builds no pipeline (``mnist-batch runs``, ``monitor``, ``report``, a script that
    reads a store on S3) calls this first: Beam's S3 filesystem opens no client until it is given
    options. The scoring launch passes its Beam options (``--s3_endpoint_url`` ...); a job's workers
    get theirs from the runner.

    Args:
      options: Beam's ``PipelineOptions`` (its ``--s3_*``, ``--project`` ... options), or a dict of
        them; None or empty: none, so each filesystem's client reads the environment (``AWS_*``).
    """
    # Not an empty dict: Beam takes a falsy one for "no options", and its S3 filesystem then opens
    # no client at all. A False flag is what no option means to every filesystem (GCS drops it).
    options = options or {"s3_disable_ssl": False}
    FileSystems.set_options(options)
    values = options.get_all_options() if hasattr(options, "get_all_options") else dict(options)
    s3.configure(values)
    _configured["options"] = options


def configure_s3(options: dict[str, Any] | None) -> None:
    """On a job's worker: this package's S3 client with the job's ``--s3_*`` options
    (:func:`mnist_batch.runstore.s3.options_of`); none given: the worker's environment. Beam's own
    options, which the runner set, are left alone."""
    if options:
        s3.configure(options)
        _configured["options"] = options
    elif _configured["options"] is None:
        s3.configure({})
        _configured["options"] = {}


def remote(uri: str) -> bool:
    """:func:`is_remote`; the first use of a remote URI in a process that called no :func:`configure`
    configures this package's own S3 client from the environment (Beam's options, which a runner
    sets on its workers, are left as they are)."""
    if not is_remote(uri):
        return False
    if _configured["options"] is None:
        s3.configure({})
        _configured["options"] = {}
    return True


def check_reachable(uri: str, what: str) -> None:
    """Raises a one-line :class:`RunStoreError` when ``uri``'s bucket cannot be used (S3: a ``HEAD``
    of the bucket: wrong credentials, no such bucket, unreachable endpoint); nothing for other places.

    Args:
      uri: any path or URI.
      what: how the message names it (``--output s3://b/runs``).
    """
    if remote(uri) and s3.is_s3(uri):
        reason = s3.check_bucket(uri)
        if reason is not None:
            raise RunStoreError(f"{what}: {reason}")


def glob_escape(path: str) -> str:
    """``path`` as a Beam match pattern that matches exactly that path (``[`` -> ``[[]``, ...)."""
    return "".join(f"[{c}]" if c in GLOB_CHARS else c for c in path)


def join(base: str, *parts: str) -> str:
    if remote(base):
        return FileSystems.join(base, *parts)
    return os.path.join(base, *parts)  # what Beam's local filesystem does, for file:// URIs too


def exists(uri: str) -> bool:
    if remote(uri) and s3.is_s3(uri):
        return s3.exists(uri)
    if remote(uri):
        return FileSystems.exists(uri)
    return os.path.lexists(local_path(uri))


def list_files(folder: str) -> list[str]:
    """Every file under ``folder``, recursively, sorted; ``[]`` when it does not exist."""
    if remote(folder) and s3.is_s3(folder):
        return s3.list_keys(folder.rstrip("/") + "/")  # literal keys: no glob to escape
    if remote(folder):
        pattern = glob_escape(folder.rstrip("/")) + "/**"
        try:
            result = FileSystems.match([pattern])[0]
        except Exception:  # noqa: BLE001 -- Beam raises BeamIOError for a missing prefix: no files
            return []
        return sorted(m.path for m in result.metadata_list)
    found = []
    scheme = LOCAL_SCHEME if folder.startswith(LOCAL_SCHEME) else ""  # names come back as they were asked
    for dirpath, _, filenames in os.walk(local_path(folder)):
        found.extend(scheme + os.path.join(dirpath, name) for name in filenames)
    return sorted(found)


def list_dir(folder: str) -> list[str]:
    """Names of the entries (files and folders) directly in ``folder``, sorted; ``[]`` if missing."""
    if remote(folder):
        prefix = folder.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/", 1)[0] for p in list_files(folder) if p.startswith(prefix)})
    try:
        return sorted(os.listdir(local_path(folder)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def makedirs(folder: str) -> None:
    """Creates a local folder and its parents (object stores have no folders: nothing to do)."""
    if not is_remote(folder):
        os.makedirs(local_path(folder), exist_ok=True)


def parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def rename(src: str, dst: str) -> None:
    """Moves a file (or, locally, a whole folder) to ``dst``; ``dst``'s parents are created."""
    if remote(src) and s3.is_s3(src) and s3.is_s3(dst):
        s3.copy(src, dst)
        s3.delete([src])
        return
    if remote(src):
        FileSystems.rename([src], [dst])
        return
    src, dst = local_path(src), local_path(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.rename(src, dst)


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


def delete_tree(folder: str) -> None:
    """Deletes ``folder`` and everything under it; nothing to do when it does not exist."""
    if remote(folder):
        files = list_files(folder)
        if files and s3.is_s3(folder):
            s3.delete(files)
        elif files:
            FileSystems.delete(files)
        return
    folder = local_path(folder)
    if os.path.isdir(folder) and not os.path.islink(folder):
        shutil.rmtree(folder)
    elif os.path.lexists(folder):
        os.remove(folder)


def delete_file(uri: str) -> None:
    """Deletes one file; nothing to do when it does not exist."""
    if remote(uri) and s3.is_s3(uri):
        s3.delete([uri])  # no error for a missing key
        return
    if remote(uri):
        if FileSystems.exists(uri):
            FileSystems.delete([uri])
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(local_path(uri))


def remove_empty_dir(folder: str) -> None:
    """Removes a local folder if it is empty (object stores have no folders: nothing to do)."""
    if not is_remote(folder):
        with contextlib.suppress(OSError):
            os.rmdir(local_path(folder))


def read_text(uri: str) -> str:
    if remote(uri) and s3.is_s3(uri):
        return s3.get(uri).decode("utf-8")
    if remote(uri):
        with FileSystems.open(uri) as f:
            return f.read().decode("utf-8")
    with open(local_path(uri), encoding="utf-8") as f:
        return f.read()


def write_atomic(uri: str, text: str) -> None:
    """Writes ``text`` so that a reader sees the old file or the whole new one, never a part."""
    data = text.encode("utf-8")
    if remote(uri) and s3.is_s3(uri):
        s3.put(uri, data)  # one PUT: the object appears whole
        return
    if remote(uri):
        with FileSystems.create(uri) as f:  # an object store publishes the object when it is closed
            f.write(data)
        return
    uri = local_path(uri)
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    tmp = f"{uri}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, uri)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _link_new(path: str, data: bytes) -> bool | None:
    """Writes ``data`` to a temporary file beside ``path`` and hard-links it there: True when this call
    made ``path``, False when it existed; None when the filesystem cannot hard-link (the caller falls back)."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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


def create_exclusive(uri: str, text: str) -> bool:
    """Creates ``uri`` with ``text`` unless it exists; True when this call created it.

    Local disks: the text is written to a private temporary file first, then hard-linked to ``uri``
    (``link`` fails when ``uri`` exists), so of two callers exactly one wins and a reader never sees
    the file before its text is whole; where the filesystem has no hard links, one ``O_CREAT |
    O_EXCL`` then the write. S3: one conditional ``PUT``. Other object stores: a check then a write
    (best effort; see the module docstring).
    """
    data = text.encode("utf-8")
    if remote(uri) and s3.is_s3(uri):
        return s3.put_if_absent(uri, data) is not None
    if remote(uri):
        if FileSystems.exists(uri):
            return False
        with FileSystems.create(uri) as f:
            f.write(data)
        return True
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
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True
