"""The S3 server lost at each phase of a real ``mnist-batch score`` run (issue 33, item 1).

The CLI runs as a user runs it, in its own process, with the ``AWS_*`` variables of the fixture's
server (VersityGW, tests/s3_server.py), its input and output on the bucket. ``tests/s3_kill_at.py``
kills the server (SIGKILL) just before the first request of the phase leaves the process, so the
phase is hit exactly: the job's listing of the input, the image reads, the shard uploads, the
commit's fence check, the commit's copies, a lease renewal. The server stays down until the
command has exited, then comes back with what it had stored.

Each case checks what the issue promises: exit 2; the last line of stderr is the one error line,
naming the endpoint (host:port) and the step; no traceback (``--debug`` shows it); nothing visible
to readers; the leases the command could not release named for ``runs clean``; after ``runs
clean``, an incremental rerun commits every input exactly once.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
import s3_server as s3_fixtures
from PIL import Image

from mnist_batch.runstore import fs, runs
from mnist_batch.tables import CLAIMS_DIR, JOURNAL_FILE, STAGING_DIR

import scoring_fixtures

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
tiny_model = scoring_fixtures.tiny_litert_model  # no TensorFlow in the CLI's process: seconds less a run
sample_data = scoring_fixtures.sample_data
pytestmark = [pytest.mark.s3, pytest.mark.slow]
REPO = pathlib.Path(__file__).resolve().parents[1]
KILL_AT = REPO / "tests" / "s3_kill_at.py"
IMAGES = 6

STEP = {
    "listing": "listing the input s3://",
    "reading": "reading the input image s3://",
    "writing": "writing shards into s3://",
    "fence": "cannot commit run r1: whether this launch still holds its lease is unknown",
    "commit": "commit run r1 into s3://",
}
"""What the error line says of each phase's step."""
ANY_STEP = re.compile("|".join(re.escape(s) for s in STEP.values()))
"""A lease renewal fails silently (it is tried again); the run fails at its next step, whichever it is."""


@pytest.fixture
def scans(s3_server, s3_bucket, sample_data, tmp_path) -> str:
    """``s3://BUCKET/scans/``: IMAGES test digits under ``scans/<label>/``."""
    client, name = s3_server.client(), s3_bucket.removeprefix("s3://")
    test = sample_data.split("test")
    for i in range(IMAGES):
        Image.fromarray(test.images[i]).save(tmp_path / f"{i}.png")
        client.upload_file(str(tmp_path / f"{i}.png"), name, f"scans/{test.labels[i]}/{i:05d}.png")
    return f"{s3_bucket}/scans/"


def mnist_batch(s3_server, argv: list[str], *, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``mnist-batch ARGV`` in a new process (with ``kill_at``: the server killed at that phase)."""
    env = dict(os.environ, **s3_server.env(), PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env["MNIST_BATCH_TEST_UNKNOWN_WAIT_S"] = "3"  # the fence check's wait for an unknown lease (30 s)
    if kill_at:
        command = [sys.executable, str(KILL_AT), kill_at, str(s3_server.process.pid), str(s3_server.port), *argv]
    else:
        command = [sys.executable, "-m", "mnist_batch", *argv]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def restart(server) -> None:
    server.stop()  # reaps the killed process (or stops a live one)
    server.start()


def score_argv(model, scans: str, root: str, run_id: str) -> list[str]:
    return ["score", "--model", str(model), "--input", scans, "--output", root, "--layout", "runs",
            "--incremental", "--run-id", run_id]  # fmt: skip


@pytest.mark.parametrize("phase", ["listing", "reading", "writing", "fence", "commit", "heartbeat"])
def test_the_server_lost_at_each_phase_ends_in_one_line_and_the_store_recovers(
    phase, s3_server, s3_bucket, scans, tiny_model
):
    root = f"{s3_bucket}/runs"
    started = time.monotonic()
    try:
        failed = mnist_batch(s3_server, score_argv(tiny_model, scans, root, "r1"), kill_at=phase)
    finally:
        took = time.monotonic() - started
        restart(s3_server)
    err = failed.stderr.strip().splitlines()
    killed = [i for i, line in enumerate(err) if line.startswith(f"s3_kill_at: killed the server at {phase} ")]
    assert killed, failed.stderr[-3000:]  # the phase was reached
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert len(err[killed[0] + 1 :]) == 1, err[killed[0] + 1 :]  # one line after the server went
    line = err[-1]
    assert line.startswith("mnist-batch: error: run r1 failed"), line
    assert f"127.0.0.1:{s3_server.port}" in line, line  # the endpoint
    assert (ANY_STEP if phase == "heartbeat" else re.compile(re.escape(STEP[phase]))).search(line), line
    print(f"{phase}: exit 2 after {took:.1f} s: {line}")

    # Nothing visible to readers, though the commit phase left a journal that runs clean completes.
    assert runs.committed_runs(root) == []
    assert runs.read_runs(root, "predictions").num_rows == 0
    # The commit's step: whether a journal was written is asked, and unknown. A lost heartbeat is
    # followed by whichever request comes next: a shard's write, or the commit's footer checks.
    in_commit = phase in ("fence", "commit") or (phase == "heartbeat" and "commit run r1" in line)
    if in_commit:
        assert "whether its commit started is unknown" in line, line
        assert f"`mnist-batch runs clean {root}` finishes it" in line, line
    else:  # a step before the commit: nothing was, whatever the store says
        assert ", nothing committed" in line, line
    assert "[while running" not in line, line  # Beam's name of the step, not the user's
    # The leases: the server was away when the command let them go, so the line names them.
    leases = [p for p in fs.list_files(root) if f"/{CLAIMS_DIR}/" in p]
    assert len(leases) == 2, leases  # the run's and the incremental history's
    assert f"lease(s) left for `mnist-batch runs clean {root}`" in line, line
    assert all(lease in line for lease in leases), line

    clean = mnist_batch(s3_server, ["runs", "clean", root])
    assert clean.returncode == 0, clean.stderr
    left = fs.list_files(root)
    assert not [p for p in left if f"/{CLAIMS_DIR}/" in p or f"/{STAGING_DIR}/" in p or p.endswith(JOURNAL_FILE)]
    again = mnist_batch(s3_server, score_argv(tiny_model, scans, root, "r2"))
    assert again.returncode == 0, again.stderr[-3000:]
    paths = runs.read_runs(root, "predictions").column("path").to_pylist()
    assert len(paths) == IMAGES and len(set(paths)) == IMAGES  # every input once, none twice


def test_debug_shows_the_traceback_of_a_lost_server(s3_server, s3_bucket, scans, tiny_model):
    root = f"{s3_bucket}/runs"
    try:
        failed = mnist_batch(s3_server, [*score_argv(tiny_model, scans, root, "r1"), "--debug"], kill_at="writing")
    finally:
        restart(s3_server)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Traceback (most recent call last)" in failed.stderr
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("mnist-batch: error: run r1 failed") and STEP["writing"] in line, line


def test_a_glob_input_on_a_lost_server_fails_in_seconds(s3_server, s3_bucket, scans, tiny_model):
    """A glob is matched by Beam's S3 filesystem, whose own retries (seven, from 5 s doubling) held
    a refused listing for over ten minutes; bounded (runstore/beam_s3.py), it is seconds."""
    root = f"{s3_bucket}/runs"
    started = time.monotonic()
    try:
        failed = mnist_batch(s3_server, score_argv(tiny_model, f"{scans}*/*.png", root, "r1"), kill_at="listing")
    finally:
        took = time.monotonic() - started
        restart(s3_server)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"mnist-batch: error: --input: cannot list {scans}*/*.png (S3ClientError: "), line
    assert f"127.0.0.1:{s3_server.port}" in line, line
    assert took < 60, f"{took:.1f} s"
    assert f"lease(s) left for `mnist-batch runs clean {root}`" in line, line  # checked once claimed
    print(f"glob listing: exit 2 after {took:.1f} s: {line}")


def test_a_lease_renewal_that_failed_is_made_again_once_the_server_is_back(s3_server, s3_bucket, monkeypatch):
    """A renewal the stopped server refused is not the end of the lease: the next beat renews it."""
    from mnist_batch.runstore import claims

    monkeypatch.setattr(claims, "LEASE_TTL_S", 1.0)  # a beat every 0.25 s
    lease = claims.claim(f"{s3_bucket}/runs", "run=r1", run_id="r1", attempt="r1.a")
    try:
        s3_server.stop()
        stopped = time.time()
        deadline = time.monotonic() + 30
        while lease.owner["heartbeat_at"] < stopped:  # a beat was tried while the server was away
            assert time.monotonic() < deadline, "no lease renewal was tried in 30 s"
            time.sleep(0.05)
        s3_server.start()
        back = time.time()
        while (claims.read_lease(lease.uri) or {}).get("heartbeat_at", 0) < back:
            assert time.monotonic() < deadline, "the lease was not renewed once the server was back"
            time.sleep(0.05)
        assert lease._thread.is_alive()
    finally:
        if s3_server.process is None:
            s3_server.start()
        lease.release()
    assert claims.read_lease(lease.uri) is None


def test_the_server_lost_while_the_model_is_read_is_one_line_before_anything_is_claimed(
    s3_server, s3_bucket, scans, tiny_model
):
    client, name = s3_server.client(), s3_bucket.removeprefix("s3://")
    for path in tiny_model.parent.iterdir():  # the .keras, its .tflite and its card
        client.upload_file(str(path), name, f"models/{path.name}")
    model, root = f"{s3_bucket}/models/{tiny_model.name}", f"{s3_bucket}/runs"
    try:
        failed = mnist_batch(s3_server, score_argv(model, scans, root, "r1"), kill_at="model")
    finally:
        restart(s3_server)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    # Before: "...tiny.card.json: model card not found or unreadable (S3ClientError)", no endpoint.
    assert line.startswith(f"mnist-batch: error: {s3_bucket}/models/tiny.card.json: model card"), line
    assert f"127.0.0.1:{s3_server.port}" in line, line
    print(f"model: {line}")
    assert not fs.list_files(root)  # the model is checked first: nothing claimed, nothing to clean
    again = mnist_batch(s3_server, score_argv(model, scans, root, "r2"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert runs.read_runs(root, "predictions").num_rows == IMAGES
