"""Shard footers on a real S3-compatible server (VersityGW, tests/s3_server.py): only the footer is fetched.

``shard_rows`` is called for every shard of every earlier run by an incremental run's history step
(``check_readable``) and for each new shard by the progress line; on the bucket it must not download
whole shards to read a row count.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3_server as s3_fixtures

from mnist_batch.runstore import s3, shards

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
pytestmark = pytest.mark.s3


def parquet(table: pa.Table, **kwargs) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def fetched():
    """The byte counts of the GETs made through the run store's shared client while the test runs."""
    sizes: list[int] = []

    def count(parsed, **_):
        sizes.append(int(parsed.get("ContentLength") or 0))

    events = s3.client().meta.events
    events.register("after-call.s3.GetObject", count)
    yield sizes
    events.unregister("after-call.s3.GetObject", count)


def test_a_large_shard_s_rows_come_from_its_footer_alone(s3_bucket, fetched):
    data = parquet(pa.table({"path": [f"scan-{i:09d}.png" for i in range(200_000)]}), row_group_size=4096)
    uri = f"{s3_bucket}/t/part-1.parquet"
    s3.put(uri, data)
    assert shards.shard_rows(uri) == 200_000
    assert len(fetched) == 1 and fetched[0] <= shards.FOOTER_GUESS < len(data) // 10


def test_a_footer_longer_than_the_first_guess_is_fetched_whole(s3_bucket, fetched):
    table = pa.table({f"c{j}": list(range(2000)) for j in range(60)})
    data = parquet(table, row_group_size=10)  # 200 row groups x 60 columns: a footer of several 100 KiB
    assert int.from_bytes(data[-8:-4], "little") > shards.FOOTER_GUESS
    uri = f"{s3_bucket}/t/part-2.parquet"
    s3.put(uri, data)
    assert shards.shard_rows(uri) == 2000
    assert len(fetched) == 2 and sum(fetched) < len(data)


def test_a_small_shard_and_damaged_ones(s3_bucket):
    data = parquet(pa.table({"x": [1, 2, 3]}))
    for name, body in (("small", data), ("truncated", data[:-3]), ("empty", b""), ("text", b"not parquet")):
        s3.put(f"{s3_bucket}/t/{name}.parquet", body)
    assert shards.shard_rows(f"{s3_bucket}/t/small.parquet") == 3
    for name in ("truncated", "empty", "text"):
        with pytest.raises(Exception, match="(?i)parquet|magic|size"):
            shards.shard_rows(f"{s3_bucket}/t/{name}.parquet")
