"""Faults on a bucket of a real S3-compatible server (tests/s3_server.py): the server going away mid-commit.

A stopped server is not a quick failure: Beam's S3 filesystem retries a refused request with
exponential backoff (5 s, 10 s, ... seven times), so a commit whose server is gone for good fails
only after many minutes. The test therefore restarts the server itself mid-commit (its objects
are files on disk and survive) and makes the commit step fail at its next move, as it would
once Beam gives up: the commit is cut short with one shard moved, and ``runs clean`` completes it.
"""

from __future__ import annotations

import pytest
import s3_server as s3_fixtures
from PIL import Image

from mnist_batch.config import ScoreConfig
from mnist_batch.runstore import fs, runs
from mnist_batch.scoring.launch import RunFailedError, RunOptions, launch
from mnist_batch.tables import JOURNAL_FILE, STAGING_DIR

import scoring_fixtures

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = [pytest.mark.s3, pytest.mark.slow]
IMAGES = 6


def test_server_restarted_mid_commit_then_runs_clean_completes_it(
    s3_server, s3_bucket, tiny_model, sample_data, tmp_path, monkeypatch
):
    test = sample_data.split("test")
    for i in range(IMAGES):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    root = f"{s3_bucket}/runs"
    moves = []
    rename = fs.rename

    def rename_then_fail(src, dst):
        if moves:
            raise ConnectionError(f"the S3 server went away while moving {src}")
        rename(src, dst)
        moves.append(dst)
        s3_server.stop()  # the server goes away after the first shard of the commit moved ...
        s3_server.start()  # ... and comes back, with what it had stored

    monkeypatch.setattr(fs, "rename", rename_then_fail)
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=root, run_id="c1")
    try:
        with pytest.raises(RunFailedError, match="the S3 server went away"):
            launch(config, RunOptions(layout="runs", run_date="2026-12-01"))
    finally:
        monkeypatch.undo()
        if s3_server.process is None:
            s3_server.start()
    assert len(moves) == 1
    assert runs.committed_runs(root) == []  # no marker: readers that gate on it see nothing
    assert runs.read_runs(root, "predictions").num_rows == 0
    journals = [p for p in fs.list_files(root) if p.endswith(JOURNAL_FILE)]
    assert len(journals) == 1  # the commit's journal survived the stop

    result = runs.clean(root)
    assert result["completed"] == journals and result["rolled_back"] == []
    assert [r.run_id for r in runs.committed_runs(root)] == ["c1"]
    assert runs.read_runs(root, "predictions").num_rows == IMAGES
    left = fs.list_files(root)
    assert not any(f"/{STAGING_DIR}/" in p or p.endswith(JOURNAL_FILE) for p in left)
