"""Faults on a bucket of a real S3-compatible server (tests/s3_server.py): the server going away mid-commit.

A stopped server is not a quick failure: Beam's S3 filesystem retries a refused request with
exponential backoff (5 s, 10 s, ... seven times), so a commit whose server is gone for good fails
only after many minutes. The test therefore restarts the server itself mid-commit (its objects
are files on disk and survive) and makes the commit step fail at its next move, as it would
once Beam gives up: the commit is cut short with one shard moved, and ``runs clean`` completes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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


def test_a_shard_deleted_from_staging_fails_the_commit_loudly(s3_server, s3_bucket, tiny_model, sample_data, tmp_path):
    import mnist_batch.scoring.attempt as commit_step  # where the in-job commit (CommitRunFn) calls commit_run

    test = sample_data.split("test")
    for i in range(IMAGES):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    root = f"{s3_bucket}/runs"
    commit_run = commit_step.commit_run
    deleted = []

    def delete_a_shard_then_commit(layout, attempt, shards, *args, **kwargs):
        victim = shards["predictions"][0]
        fs.delete_file(victim)  # gone from the bucket between the job's write and its commit
        deleted.append(victim)
        return commit_run(layout, attempt, shards, *args, **kwargs)

    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=root, run_id="d1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(commit_step, "commit_run", delete_a_shard_then_commit)
        with pytest.raises(RunFailedError, match="cannot be read back"):
            launch(config, RunOptions(layout="runs", run_date="2026-12-01"))
    assert len(deleted) == 1 and deleted[0].startswith(f"{root}/{STAGING_DIR}/")
    assert runs.committed_runs(root) == []
    assert not [p for p in fs.list_files(root) if "/predictions/" in p and f"/{STAGING_DIR}/" not in p]
    runs.clean(root)
    assert not [p for p in fs.list_files(root) if f"/{STAGING_DIR}/" in p or p.endswith(JOURNAL_FILE)]


def test_a_launcher_killed_mid_run_leaves_nothing_visible_and_runs_clean_removes_it(
    s3_server, s3_bucket, tiny_model, sample_data, tmp_path
):
    inputs = tmp_path / "in"
    scoring_fixtures.write_train_digits(sample_data, inputs, 3000)
    root = f"{s3_bucket}/runs"
    command = [sys.executable, "-m", "mnist_batch", "score", "--model", str(tiny_model), "--input", str(inputs)]
    command += ["--output", root, "--layout", "runs", "--run-id", "k1", "--run-date", "2026-12-01", "-q"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")  # the AWS_* variables of the fixture's server
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not any(p.endswith(".parquet") for p in fs.list_files(f"{root}/{STAGING_DIR}")):
            assert proc.poll() is None, (
                "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
            )
            assert time.monotonic() < deadline, "no staged shard appeared in 180 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-run: a shard is staged, nothing committed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert runs.committed_runs(root) == []
    assert not [p for p in fs.list_files(root) if "/predictions/" in p and f"/{STAGING_DIR}/" not in p]
    cleaned = runs.clean(root)
    assert len(cleaned["deleted"]) == 1 and len(cleaned["stale_leases"]) == 1
    assert not [p for p in fs.list_files(root) if f"/{STAGING_DIR}/" in p or "/_claims/" in p]


def test_during_a_commit_on_the_bucket_a_naive_listing_sees_part_of_the_run_and_a_gated_reader_none(
    s3_server, s3_bucket, tiny_model, sample_data, tmp_path, monkeypatch
):
    """What "What is atomic where" says of S3, measured: shards appear one copy at a time, so readers gate on _SUCCESS."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from pyarrow import fs as pafs

    test = sample_data.split("test")
    for i in range(IMAGES):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    root = f"{s3_bucket}/runs"
    bucket_fs = pafs.S3FileSystem(
        endpoint_override=s3_server.endpoint,
        access_key=s3_fixtures.ACCESS_KEY,
        secret_key=s3_fixtures.SECRET_KEY,
        region=s3_fixtures.REGION,
    )

    def naive_tables() -> set[str]:
        """The tables a plain listing of ROOT/<table>/ finds rows of (Hive partitions, no gate)."""
        seen = set()
        for table in ("predictions", "errors", "confusion", "per_class", "manifest", "runs"):
            path = f"{root.removeprefix('s3://')}/{table}"
            if bucket_fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                seen.add(table)
        return seen

    def joined_with_runs_table() -> tuple[int, int]:
        """Rows of predictions whose run has its row in the runs table (moved last): pyarrow, Polars."""
        import polars as pl

        base = root.removeprefix("s3://")
        try:
            committed = pads.dataset(f"{base}/runs", filesystem=bucket_fs, partitioning="hive").to_table()
            predictions = pads.dataset(f"{base}/predictions", filesystem=bucket_fs, partitioning="hive").to_table()
        except (FileNotFoundError, OSError):
            return 0, 0
        key = lambda t: pc.binary_join_element_wise(pc.cast(t["dt"], "string"), pc.cast(t["run"], "string"), "/")  # noqa: E731
        in_pyarrow = predictions.filter(pc.is_in(key(predictions), value_set=key(committed))).num_rows
        storage = {
            "aws_endpoint_url": s3_server.endpoint,
            "aws_access_key_id": s3_fixtures.ACCESS_KEY,
            "aws_secret_access_key": s3_fixtures.SECRET_KEY,
            "aws_region": s3_fixtures.REGION,
            "aws_allow_http": "true",
        }
        scan = lambda table: pl.scan_parquet(f"{root}/{table}/", storage_options=storage, hive_partitioning=True)  # noqa: E731
        in_polars = scan("predictions").join(scan("runs").select("dt", "run"), on=["dt", "run"], how="semi")
        return in_pyarrow, in_polars.collect().height

    seen_mid_commit, moved = [], []
    rename = fs.rename

    def rename_and_look(src, dst):
        rename(src, dst)
        tables = naive_tables()
        joined = joined_with_runs_table() if "runs" in tables else (0, 0)
        seen_mid_commit.append((tables, len(runs.read_runs(root, "predictions")), joined))
        moved.append(dst)

    monkeypatch.setattr(fs, "rename", rename_and_look)
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=root, run_id="v1")
    launch(config, RunOptions(layout="runs", run_date="2026-12-01"))
    monkeypatch.undo()
    partial = [tables for tables, _, _ in seen_mid_commit if 0 < len(tables) < 6]
    assert partial, seen_mid_commit  # a naive listing saw some tables of the run and not others
    assert all(gated == 0 for _, gated, _ in seen_mid_commit)  # the gated reader: nothing until _SUCCESS
    # Joined with the runs table, whose row moves last: nothing, then the whole run (pyarrow and Polars).
    assert all(joined in ((0, 0), (IMAGES, IMAGES)) for _, _, joined in seen_mid_commit), seen_mid_commit
    assert seen_mid_commit[-1][2] == (IMAGES, IMAGES)
    assert moved[-1].startswith(f"{root}/runs/") and not any(m.startswith(f"{root}/runs/") for m in moved[:-1])

    # Replacing the run: its runs-table row goes first, so a joined reader sees it whole, then nothing, then the new one.
    delete_tree, looks = fs.delete_tree, []

    def delete_and_look(path):
        delete_tree(path)
        looks.append((path, joined_with_runs_table()))

    def move_and_look(src, dst):
        rename(src, dst)
        looks.append((dst, joined_with_runs_table()))

    monkeypatch.setattr(fs, "delete_tree", delete_and_look)
    monkeypatch.setattr(fs, "rename", move_and_look)
    launch(config, RunOptions(layout="runs", run_date="2026-12-01", replace=True))
    monkeypatch.undo()
    assert any("/predictions/" in path for path, _ in looks)  # the earlier partitions were deleted, then moved in
    assert all(joined in ((0, 0), (IMAGES, IMAGES)) for _, joined in looks), looks
    assert runs.read_runs(root, "predictions").num_rows == IMAGES
    assert pads.dataset(f"{root.removeprefix('s3://')}/predictions", filesystem=bucket_fs).count_rows() == IMAGES
