"""Checking ``--input`` folders on a real S3-compatible server (VersityGW, tests/s3_server.py) before the launch.

A folder pattern (``s3://b/scans/**``) is checked with one ``LIST`` asking for one key through the
run store's shared client, not with Beam's match (a client of its own and a whole page of keys).
"""

from __future__ import annotations

import pytest
import s3_server as s3_fixtures
from apache_beam.io.filesystems import FileSystems

from mnist_batch.runstore import s3
from mnist_batch.scoring import read
from mnist_batch.scoring.errors import ScoringError

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
pytestmark = pytest.mark.s3


@pytest.fixture
def lists():
    """The parameters of the ``ListObjectsV2`` requests made through the shared client during the test."""
    seen: list[dict] = []

    def keep(params, **_):
        seen.append(dict(params))

    events = s3.client().meta.events
    events.register("before-parameter-build.s3.ListObjectsV2", keep)
    yield seen
    events.unregister("before-parameter-build.s3.ListObjectsV2", keep)


def test_a_folder_is_checked_with_one_key(s3_bucket, lists, monkeypatch):
    for i in range(3):
        s3.put(f"{s3_bucket}/scans/7/{i}.png", b"x")
    monkeypatch.setattr(FileSystems, "match", lambda *a, **k: pytest.fail("Beam's match was used"))
    patterns = read.expand_inputs([f"{s3_bucket}/scans/"])
    assert patterns == [f"{s3_bucket}/scans/**"]
    read.check_patterns_match(patterns)
    assert [p["MaxKeys"] for p in lists] == [1] and lists[0]["Prefix"] == "scans/"
    with pytest.raises(ScoringError, match="scans-none/\\*\\* matches no files"):
        read.check_patterns_match([f"{s3_bucket}/scans-none/**"])


def test_other_patterns_still_go_through_beam(s3_bucket):
    s3.put(f"{s3_bucket}/scans/7/a.png", b"x")
    assert read.folder_prefix(f"{s3_bucket}/scans/*/a.png") is None
    assert read.folder_prefix(f"{s3_bucket}/sc[[]1]/**") is None
    read.check_patterns_match([f"{s3_bucket}/scans/*/a.png"])
    with pytest.raises(ScoringError, match="matches no files"):
        read.check_patterns_match([f"{s3_bucket}/scans/*/b.png"])
