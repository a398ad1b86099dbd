"""The S3 store of the storage interface on a real S3-compatible server (VersityGW, tests/s3_server.py).

Shards are written through the same bounded client that reads them back (no longer Beam's own
S3 filesystem): in parts when large, never published by a writer that did not finish.
"""

from __future__ import annotations

import gc

import pyarrow as pa
import pytest
import s3_server as s3_fixtures

from mnist_batch.runstore import fs, s3store, shards
from mnist_batch.runstore.storage import storage_for

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
pytestmark = pytest.mark.s3


def test_a_large_stream_is_uploaded_in_parts_and_appears_whole(s3_bucket):
    store = storage_for(s3_bucket)
    uri = f"{s3_bucket}/big/part-1.bin"
    data = bytes(range(256)) * (4096 * 11)  # 11 MiB: one 8 MiB part and the rest
    with store.open_write(uri) as f:
        for i in range(0, len(data), 1_000_000):
            f.write(data[i : i + 1_000_000])
        assert not store.exists(uri)  # nothing visible before close
    assert store.read_bytes(uri) == data
    assert store.read_tail(uri, 5) == (data[-5:], len(data))


def test_a_writer_dropped_without_close_publishes_nothing(s3_bucket):
    store = storage_for(s3_bucket)
    for size in (10, s3store.PART_BYTES + 10):  # below one part, and with a part uploaded
        uri = f"{s3_bucket}/dropped/{size}.bin"
        f = store.open_write(uri)
        f.write(b"x" * size)
        del f
        gc.collect()
        assert not store.exists(uri)
    assert fs.list_files(f"{s3_bucket}/dropped") == []


def test_a_shard_written_and_read_through_the_one_client(s3_bucket):
    schema = pa.schema([("path", pa.string()), ("digit", pa.int8())])
    writer = shards.ShardWriter(shards.new_shard_path(f"{s3_bucket}/t"), schema)
    writer.write(pa.table({"path": ["a", "b"], "digit": [1, 2]}, schema=schema))
    path = writer.close()
    assert shards.shard_rows(path) == 2
    assert shards.read_shard(path).to_pydict() == {"path": ["a", "b"], "digit": [1, 2]}
    assert shards.shard_paths(f"{s3_bucket}/t") == [path]


def test_a_folder_is_listed_with_sizes_and_versions(s3_bucket):
    store = storage_for(s3_bucket)
    store.write_atomic(f"{s3_bucket}/scans/a [1].png", b"12345")
    listed = list(store.list_versioned(f"{s3_bucket}/scans"))
    assert [(p, size) for p, size, _, _ in listed] == [(f"{s3_bucket}/scans/a [1].png", 5)]
    assert listed[0][3] and listed[0][2] > 0  # an ETag, an mtime
    assert store.any_under(f"{s3_bucket}/scans") and not store.any_under(f"{s3_bucket}/none")
