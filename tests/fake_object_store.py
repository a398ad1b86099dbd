"""A Beam filesystem ``fakestore://`` that behaves like an object store, backed by a local folder.

Like GCS and S3 it has no folders (``has_dirs`` is False: listing is by prefix), joins with
``/`` and its paths are URIs, so the run store's object-store code paths (listing by prefix,
per-shard copy-and-delete commits, check-then-write leases, uploads through
``FileSystems.create``) run here without a cloud. Set :data:`ROOT` (a local folder) before use;
importing this module registers the scheme with Beam.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "fakestore"
ROOT = {"path": None}


def to_local(uri: str) -> str:
    if not uri.startswith(f"{SCHEME}://"):
        raise ValueError(f"not a {SCHEME} URI: {uri}")
    if ROOT["path"] is None:
        raise RuntimeError("fake_object_store.ROOT['path'] is not set")
    return os.path.join(ROOT["path"], uri[len(SCHEME) + 3 :])


def to_uri(path: str) -> str:
    return f"{SCHEME}://" + os.path.relpath(path, ROOT["path"]).replace(os.sep, "/")


class FakeObjectStore(LocalFileSystem):
    """``fakestore://bucket/key`` objects stored as local files under ``ROOT``."""

    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        """Object stores have no folders."""

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        local = to_local(dir_or_prefix)
        base = local if os.path.isdir(local) else os.path.dirname(local)
        try:
            for dirpath, _, files in os.walk(base):
                for name in files:
                    path = os.path.join(dirpath, name)
                    if path.startswith(local):
                        yield FileMetadata(to_uri(path), os.path.getsize(path), os.path.getmtime(path))
        except Exception as e:
            raise BeamIOError("List operation failed", {dir_or_prefix: e}) from e

    def create(self, path, *args, **kwargs):
        return super().create(to_local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(to_local(path), *args, **kwargs)

    def copy(self, source_file_names, destination_file_names):
        for dst in destination_file_names:
            os.makedirs(os.path.dirname(to_local(dst)), exist_ok=True)
        super().copy([to_local(s) for s in source_file_names], [to_local(d) for d in destination_file_names])

    def rename(self, source_file_names, destination_file_names):
        """A copy then a delete per object, as on GCS and S3."""
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return os.path.isfile(to_local(path))  # an object, never a "folder"

    def size(self, path):
        return super().size(to_local(path))

    def last_updated(self, path):
        return super().last_updated(to_local(path))

    def checksum(self, path):
        return super().checksum(to_local(path))

    def metadata(self, path):
        local = to_local(path)
        if not os.path.isfile(local):
            raise BeamIOError(f"Path does not exist: {path}")
        return FileMetadata(path, os.path.getsize(local), os.path.getmtime(local))

    def delete(self, paths):
        missing = {}
        for uri in paths:
            try:
                os.remove(to_local(uri))
            except OSError as exc:
                missing[uri] = exc
        if missing:
            raise BeamIOError("Delete operation failed", missing)
