"""Leases on a real S3-compatible server (VersityGW, tests/s3_server.py): atomic claims and takeovers.

A claim is one ``PUT`` with ``If-None-Match: *``; a stale lease is taken over by a ``PUT`` with
``If-Match: <its etag>``. Many launchers racing on one lease, through the real server: exactly one wins.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading

import pytest
import s3_server as s3_fixtures

from mnist_batch.runstore import claims, fs, runs, s3

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
pytestmark = pytest.mark.s3
RACERS = 8


def race(fn, n: int = RACERS) -> list:
    """Calls ``fn(i)`` from ``n`` threads released at once; their results (or exceptions)."""
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        try:
            return fn(i)
        except Exception as exc:  # noqa: BLE001 -- the losers' errors are the result
            return exc

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def dead_owner(**extra) -> dict:
    """A lease owner on this host whose process is gone: stale at once."""
    return {
        "name": "run=r1",
        "run_id": "r1",
        "attempt": "r1.dead",
        "token": "dead",
        "host": socket.gethostname(),
        "pid": 2**22 + 7,  # above pid_max's default: no such process
        "started_at": "2026-01-01T00:00:00+00:00",
        "heartbeat_at": 0,
        "ttl_s": 120,
        "detached": False,
        **extra,
    }


def test_the_server_refuses_a_second_create(s3_server, s3_bucket):
    """What the leases rest on, checked with a plain client: 412 for If-None-Match on an existing key."""
    client, bucket = s3_server.client(), s3_bucket.removeprefix("s3://")
    first = client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(Exception) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(Exception) as stale:
        client.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    client.put_object(Bucket=bucket, Key="k", Body=b"4", IfMatch=first["ETag"])
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"4"


def test_create_exclusive_has_one_winner(s3_bucket):
    uri = f"{s3_bucket}/root/_mnist_batch_layout.json"
    results = race(lambda i: fs.create_exclusive(uri, f"writer {i}"))
    assert results.count(True) == 1 and results.count(False) == RACERS - 1, results
    assert fs.read_text(uri) == f"writer {results.index(True)}"


def test_concurrent_claims_of_one_run_have_one_winner(s3_bucket):
    root = f"{s3_bucket}/runs"
    results = race(lambda i: claims.claim(root, "run=r1", run_id="r1", attempt=f"r1.{i}", what="run r1"))
    won = [r for r in results if isinstance(r, claims.Lease)]
    lost = [r for r in results if isinstance(r, claims.ClaimError)]
    assert len(won) == 1 and len(lost) == RACERS - 1, results
    assert all("is held by" in str(e) or "starting now" in str(e) for e in lost)
    owner = claims.read_lease(won[0].uri)
    assert owner["token"] == won[0].owner["token"]
    won[0].release()
    assert not fs.exists(won[0].uri)


def test_concurrent_takeovers_of_one_stale_lease_have_one_winner(s3_bucket):
    root = f"{s3_bucket}/runs"
    uri = claims.lease_uri(root, "run=r1")
    fs.write_atomic(uri, json.dumps(dead_owner()))
    results = race(lambda i: claims.claim(root, "run=r1", run_id="r1", attempt=f"r1.{i}", what="run r1"))
    won = [r for r in results if isinstance(r, claims.Lease)]
    assert len(won) == 1, results
    assert all(isinstance(r, claims.ClaimError) for r in results if r is not won[0])
    assert claims.read_lease(uri)["attempt"] == won[0].owner["attempt"]
    claims.check_held([won[0].fence], "commit run r1")  # the winner's token is the one in place
    for loser in results:
        if loser is not won[0]:
            assert "held by" in str(loser)
    won[0].release()


def test_a_heartbeat_never_overwrites_a_takeover(s3_bucket):
    """The holder's heartbeat replaces only the version it wrote: after a takeover it stops."""
    root = f"{s3_bucket}/runs"
    lease = claims.claim(root, "run=r1", run_id="r1", attempt="r1.a", what="run r1")
    lease._stop.set()  # no background beats in this test: one beat by hand below
    stolen = s3.replace_if(lease.uri, json.dumps({**lease.owner, "token": "other"}).encode(), lease.etag)
    assert stolen is not None
    assert s3.replace_if(lease.uri, json.dumps(lease.owner).encode(), lease.etag) is None  # the beat's write
    with pytest.raises(claims.LeaseLostError, match="lost its lease"):
        claims.check_held([lease.fence], "commit run r1")
    lease.release()  # never deletes the other launch's lease
    assert claims.read_lease(lease.uri)["token"] == "other"


def test_runs_clean_deletes_only_the_stale_version(s3_bucket):
    root = f"{s3_bucket}/runs"
    uri = claims.lease_uri(root, "run=r1")
    fs.write_atomic(uri, json.dumps(dead_owner()))
    assert runs.clean(root)["stale_leases"] == [uri]
    assert not fs.exists(uri)
    live = claims.claim(root, "run=r2", run_id="r2", attempt="r2.a", what="run r2")
    assert runs.clean(root)["stale_leases"] == []
    assert claims.read_lease(live.uri)["attempt"] == "r2.a"
    live.release()
