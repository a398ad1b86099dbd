"""S3 (and S3-compatible servers) as a :class:`~mnist_batch.runstore.storage.Storage`: one boto3 client.

Every request goes through the client of :mod:`mnist_batch.runstore.s3` (bounded timeouts and
retries; Beam's S3 filesystem makes a client per call). One object appears whole when its ``PUT``
completes (so :meth:`S3Storage.write_atomic` is atomic); :meth:`S3Storage.create_exclusive` is one
conditional ``PUT`` (``If-None-Match: *``), so of two callers exactly one wins; a rename is a
server-side copy then a delete. Shards are uploaded in parts of :data:`PART_BYTES` (one ``PUT`` when
smaller), so a large one is never held whole in memory.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from mnist_batch.runstore import s3
from mnist_batch.runstore.store import Storage

PART_BYTES = 8 * 1024 * 1024
"""The size of each part of a multipart upload (S3's minimum is 5 MiB, except the last part)."""


class S3Storage(Storage):
    """``s3://bucket/key`` URIs; the client is made from ``options`` (Beam's ``--s3_*`` names) or the environment."""

    conditional = True
    lists_folders = True

    def __init__(self, options: dict[str, Any]) -> None:
        s3.configure(options)

    def describe(self) -> str:
        return f"S3 at {s3.endpoint()}"

    def exists(self, uri: str) -> bool:
        return s3.exists(uri)

    def list_files(self, folder: str) -> list[str]:
        return s3.list_keys(folder.rstrip("/") + "/")  # literal keys: no glob to escape

    def any_under(self, folder: str) -> bool:
        return s3.any_key(folder.rstrip("/") + "/")

    def rename(self, src: str, dst: str) -> None:
        s3.copy(src, dst)
        s3.delete([src])

    def delete_files(self, uris: list[str]) -> None:
        s3.delete(uris)

    def delete_file(self, uri: str) -> None:
        s3.delete([uri])  # no error for a missing key

    def read_bytes(self, uri: str) -> bytes:
        return s3.get(uri)

    def read_at_most(self, uri: str, limit: int) -> bytes:
        return s3.read_at_most(uri, limit)

    def read_tail(self, uri: str, size: int) -> tuple[bytes, int]:
        return s3.read_tail(uri, size)

    def open_write(self, uri: str) -> MultipartWriter:
        return MultipartWriter(uri)

    def write_atomic(self, uri: str, data: bytes) -> None:
        s3.put(uri, data)  # one PUT: the object appears whole

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        return s3.put_if_absent(uri, data) is not None

    def read_versioned(self, uri: str) -> tuple[bytes, str] | None:
        return s3.read(uri)

    def create_versioned(self, uri: str, data: bytes) -> str | None:
        return s3.put_if_absent(uri, data)

    def replace_if(self, uri: str, data: bytes, version: str) -> str | None:
        return s3.replace_if(uri, data, version)

    def delete_if(self, uri: str, version: str) -> bool:
        return s3.delete_if(uri, version)

    def missing(self, uri: str, exc: BaseException) -> bool:
        return isinstance(exc, FileNotFoundError) or s3.not_found(exc)

    def check_reachable(self, uri: str) -> str | None:
        return s3.check_bucket(uri)

    def list_versioned(self, folder: str) -> Iterator[tuple[str, int, float, str | None]]:
        for uri, size, modified, etag in s3.list_objects(folder.rstrip("/") + "/"):
            yield uri, size, s3.mtime_seconds(modified), etag or None


class MultipartWriter(io.RawIOBase):
    """A write-only stream to one S3 object: parts of :data:`PART_BYTES` uploaded as they fill, the
    object published whole on :meth:`close` (one ``PUT`` when it never filled a part); an upload that
    fails, or a stream closed after an error, is aborted and publishes nothing."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri
        self._bucket, self._key = s3.split(uri)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data: Any) -> int:
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) >= PART_BYTES:
            self._upload(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]
        return len(data)

    def _upload(self, chunk: bytes) -> None:
        client = s3.client()
        if self._upload_id is None:
            self._upload_id = client.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
        number = len(self._parts) + 1
        try:
            got = client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=chunk
            )
        except Exception:
            self.abort()
            raise
        self._parts.append({"PartNumber": number, "ETag": got["ETag"]})

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._upload_id is None:
                s3.put(self.uri, bytes(self._buffer))
            else:
                if self._buffer:
                    self._upload(bytes(self._buffer))
                s3.client().complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except Exception:
            self.abort()
            raise
        finally:
            self._buffer = bytearray()
            super().close()

    def __del__(self) -> None:
        """Dropped without :meth:`close` (the writer failed): nothing is published."""
        if not self.closed:
            self.abort()
            io.RawIOBase.close(self)

    def abort(self) -> None:
        """Drops the parts uploaded so far (nothing is published)."""
        if self._upload_id is not None:
            upload, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):  # what cannot be aborted now, the bucket's lifecycle rule removes
                s3.client().abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload)
