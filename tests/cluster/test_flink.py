"""``mnist-batch score`` on the Flink cluster of ``make cluster-up`` (issue 19), against DirectRunner.

Each run is the real CLI as a process: the launcher submits to Beam's Flink job server, the
TaskManagers run the Python stages in the worker pool's harness processes, the workers load
the model from the path given and check its sha256 against the card, and the job commits the
run. Fault tests SIGKILL a TaskManager or the launcher mid-run.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from flink_cluster import CLUSTER_SH, ENV, REPO, make_folder

from mnist_batch.runstore.history import committed_runs
from mnist_batch.runstore.runs import read_runs

import scoring_fixtures

pytestmark = pytest.mark.cluster

N_FILES = 20_000
RUN_DATE = "2026-12-03"
RUN_TIMEOUT_S = 1500
REST = "http://127.0.0.1:" + os.environ.get("FLINK_REST_PORT", "8081")


def score_command(model, inputs, root, run_id, *extra) -> list[str]:
    return [sys.executable, "-m", "mnist_batch", "score", "--model", str(model), "--input", str(inputs),
            "--output", str(root), "--layout", "runs", "--run-id", run_id, "--run-date", RUN_DATE, *extra]  # fmt: skip


def score(model, inputs, root, run_id, *extra, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        score_command(model, inputs, root, run_id, *extra),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(model, inputs, root, run_id, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        score_command(model, inputs, root, run_id, *extra),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ok(proc) -> str:
    assert proc.returncode == 0, (proc.stdout or "")[-2000:] + (proc.stderr or "")[-4000:]
    return proc.stdout


def run_rows(root: pathlib.Path, run_id: str, table: str) -> dict:
    runs = [r for r in committed_runs(str(root)) if r.run_id == run_id]
    assert len(runs) == 1, f"run {run_id} is not committed once under {root}"
    return read_runs(str(root), table, runs).to_pydict()


def summary(root: pathlib.Path, run_id: str) -> dict:
    return json.loads((root / "_runs" / f"dt={RUN_DATE}" / f"run={run_id}" / "summary.json").read_text())


def visible_rows(root: pathlib.Path, table: str) -> int:
    """Rows a plain reader (pyarrow.dataset over ROOT/<table>, Hive partitions) sees."""
    import pyarrow.dataset as pads

    if not (root / table).exists():
        return 0
    return pads.dataset(root / table, partitioning="hive").count_rows()


def flink_jobs() -> list[dict]:
    with urllib.request.urlopen(REST + "/jobs/overview", timeout=10) as r:
        return json.load(r)["jobs"]


def wait_for_running_job(proc: subprocess.Popen, known: set[str], seconds: float = 300) -> str:
    """The id of the Flink job the launcher submitted, once it is RUNNING."""
    deadline = time.monotonic() + seconds
    while True:
        for job in flink_jobs():
            if job["jid"] not in known and job["state"] == "RUNNING":
                return job["jid"]
        if proc.poll() is not None:
            pytest.fail("the launcher exited before its job ran:\n" + proc.stdout.read() + proc.stderr.read()[-3000:])
        assert time.monotonic() < deadline, "no RUNNING Flink job appeared"
        time.sleep(0.5)


def wait_for_first_shard(proc: subprocess.Popen, root: pathlib.Path, seconds: float = 300) -> None:
    """Until the job writes its first predictions shard into staging: scoring is under way."""
    deadline = time.monotonic() + seconds
    while not any((root / "_staging").glob("*/predictions/*.parquet")):
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be interrupted:\n" + proc.stderr.read()[-3000:])
        assert time.monotonic() < deadline, "no predictions shard appeared"
        time.sleep(0.05)


def job_state(jid: str) -> str:
    with urllib.request.urlopen(f"{REST}/jobs/{jid}", timeout=10) as r:
        return json.load(r)["state"]


def wait_job_ended(jid: str, seconds: float = 600) -> str:
    deadline = time.monotonic() + seconds
    while (state := job_state(jid)) not in ("FINISHED", "FAILED", "CANCELED"):
        assert time.monotonic() < deadline, f"job {jid} still {state}"
        time.sleep(1)
    return state


@pytest.fixture(scope="session")
def runner_options() -> list[str]:
    """The ``runner options: ...`` of ``cluster.sh`` (the cluster must be up)."""
    status = subprocess.run([str(CLUSTER_SH), "status"], capture_output=True, text=True, cwd=REPO)
    if status.returncode != 0:
        pytest.fail(f"the Flink cluster is not up (make cluster-up):\n{status.stdout}", pytrace=False)
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("runner options: "))
    return line.removeprefix("runner options: ").split()


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> pathlib.Path:
    """A small CNN with its LiteRT file (the runtime workers use), trained on the bundled sample."""
    from mnist_batch.constants import FAST_RUNTIME
    from mnist_batch.training.export import add_runtime

    path = scoring_fixtures.train_tiny_model(tmp_path_factory.mktemp("cluster_model"))
    add_runtime(path, FAST_RUNTIME)
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> pathlib.Path:
    """The bundled sample's test split (2,000 real digits) as PNG files, as the CLI exports it."""
    out = tmp_path_factory.mktemp("exported") / "test_images"
    subprocess.run(
        [sys.executable, "-m", "mnist_batch", "data", "export-images", "sample", "--split", "test", "--out", str(out)],
        check=True,
        cwd=REPO,
        env=ENV,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def files_20k(exported, tmp_path_factory) -> pathlib.Path:
    """20,000 real digits (hard links), one damaged PNG (an error row) and one text file (skipped)."""
    folder = tmp_path_factory.mktemp("files_20k") / "in"
    make_folder(exported, folder, N_FILES)
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def direct_20k(model, files_20k, tmp_path_factory):
    root = tmp_path_factory.mktemp("direct_20k") / "root"
    ok(score(model, files_20k, root, "direct"))
    return root


def sorted_rows(rows: dict) -> dict:
    order = np.argsort(rows["path"])
    return {k: [v[i] for i in order] for k, v in rows.items()}


def test_20k_files_on_flink_equal_directrunner_row_for_row(model, files_20k, direct_20k, runner_options, tmp_path):
    root = tmp_path / "root"
    proc = score(model, files_20k, root, "flink", *runner_options)
    out = ok(proc)
    assert f"scored {N_FILES:,} of {N_FILES + 1:,} images" in out
    # The workers' own progress lines go to the worker pool's log; the launcher prints its own from
    # their progress files (every second here: MNIST_BATCH_PROGRESS_S=1), while the partitions run:
    # at least two lines, counts increasing, the first well before the end (a shard closes only with
    # its whole partition on Flink's batch mode, so shards alone gave one line, at the end).
    progress = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert len(progress) >= 2 and all(line.endswith("files/s (reported by the workers)") for line in progress), (
        proc.stderr[-2000:]
    )
    counts = [int(line.split("progress: ")[1].split(" files")[0].replace(",", "")) for line in progress]
    assert counts == sorted(set(counts)) and counts[0] < N_FILES // 2 and counts[-1] <= N_FILES + 1, counts
    assert not list(root.glob("_staging/*/_progress")), "the progress files go with the staging"
    flink, direct = summary(root, "flink"), summary(direct_20k, "direct")
    assert flink["runner"] == "PortableRunner" and direct["runner"] == "DirectRunner"
    assert flink["runtime"] == direct["runtime"] == "litert"
    for key in ("counts", "accuracy", "macro_f1", "errors_by_stage", "skipped_by_reason"):
        assert flink[key] == direct[key], key

    got, want = (
        sorted_rows(run_rows(root, "flink", "predictions")),
        sorted_rows(run_rows(direct_20k, "direct", "predictions")),
    )
    assert len(got["path"]) == N_FILES and len(set(got["path"])) == N_FILES
    assert got["path"] == want["path"]
    assert got["predicted_label"] == want["predicted_label"]
    assert (
        got["model_id"] == want["model_id"] and len(set(got["model_id"])) == 1
    )  # the sha256 of the .tflite that scored
    np.testing.assert_allclose(np.asarray(got["probabilities"]), np.asarray(want["probabilities"]), atol=1e-6, rtol=0)
    for table, columns in (("errors", ("path", "stage")), ("manifest", ("path", "size"))):
        g, w = run_rows(root, "flink", table), run_rows(direct_20k, "direct", table)
        assert sorted(zip(*(g[c] for c in columns), strict=True)) == sorted(
            zip(*(w[c] for c in columns), strict=True)
        ), table
    assert len(run_rows(root, "flink", "errors")["path"]) == 1


def test_incremental_flink_after_directrunner_and_the_reverse(model, exported, runner_options, tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "root"
    make_folder(exported, inputs, 600)
    first = ok(score(model, inputs, root, "d1", "--incremental"))
    assert "scored 600 of 600 images" in first
    new = make_folder(exported, inputs, 250, start=600)
    ok(score(model, inputs, root, "f2", "--incremental", *runner_options))
    f2 = run_rows(root, "f2", "predictions")
    assert sorted(f2["path"]) == sorted(str(p) for p in new)
    newer = make_folder(exported, inputs, 150, start=850)
    ok(score(model, inputs, root, "d3", "--incremental"))
    d3 = run_rows(root, "d3", "predictions")
    assert sorted(d3["path"]) == sorted(str(p) for p in newer)
    all_rows = read_runs(str(root), "predictions").to_pydict()
    assert len(all_rows["path"]) == len(set(all_rows["path"])) == 1000


def test_taskmanager_sigkilled_mid_run(model, files_20k, runner_options, tmp_path):
    root = tmp_path / "root"
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, files_20k, root, "tmkill", *runner_options)
    try:
        jid = wait_for_running_job(proc, known)
        wait_for_first_shard(proc, root)  # the fused read -> decode -> infer stage is writing rows
        tm_pid = int((REPO / ".cache" / "flink" / "run" / "taskmanager1.pid").read_text())
        os.kill(tm_pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([str(CLUSTER_SH), "restart-taskmanager", "1"], check=True, cwd=REPO, capture_output=True)
    state = job_state(jid)
    print(f"TaskManager killed mid-run: launcher exit {proc.returncode}, Flink job {state}")
    print((stdout + stderr)[-1500:])
    if proc.returncode == 0:  # the job recovered (Flink restarted it on the slots left) and committed whole
        assert state == "FINISHED"
        assert "scored 20,000 of 20,001 images" in stdout
        rows = run_rows(root, "tmkill", "predictions")
        assert len(rows["path"]) == len(set(rows["path"])) == N_FILES
    else:  # the job failed: nothing of the run is visible
        assert proc.returncode != 0 and state in ("FAILED", "CANCELED")
        assert "nothing committed" in stderr
        assert not [r for r in committed_runs(str(root)) if r.run_id == "tmkill"]
        assert visible_rows(root, "predictions") == 0
    clean = subprocess.run(
        [sys.executable, "-m", "mnist_batch", "runs", "clean", str(root)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    ok(score(model, files_20k, root, "tmkill2", "--incremental", *runner_options))
    rows = read_runs(str(root), "predictions").to_pydict()
    assert len(rows["path"]) == len(set(rows["path"])) == N_FILES


def test_launcher_sigkilled_mid_run_commits_nothing(model, files_20k, runner_options, tmp_path):
    root = tmp_path / "root"
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, files_20k, root, "lkill", *runner_options)
    try:
        jid = wait_for_running_job(proc, known)
        wait_for_first_shard(proc, root)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # The job is not cancelled by the launcher's death: it runs on, then its commit step finds the
    # launch's lease stale (its process is gone) and refuses; the job fails with nothing committed.
    assert job_state(jid) == "RUNNING"
    state = wait_job_ended(jid, seconds=RUN_TIMEOUT_S)
    print(f"launcher SIGKILLed mid-run: Flink job {state}")
    assert state == "FAILED"
    with urllib.request.urlopen(f"{REST}/jobs/{jid}/exceptions", timeout=10) as r:
        assert "LaunchGoneError" in json.dumps(json.load(r))
    assert not committed_runs(str(root))
    assert visible_rows(root, "predictions") == 0
    # The next launch on the root deletes the dead attempt's staging; the rerun is whole.
    ok(score(model, files_20k, root, "lkill"))
    assert not (root / "_staging").exists() or not any((root / "_staging").iterdir())
    rows = run_rows(root, "lkill", "predictions")
    assert len(rows["path"]) == len(set(rows["path"])) == N_FILES


def test_two_launches_of_one_run_id_one_refused(model, exported, runner_options, tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "root"
    make_folder(exported, inputs, 2000)
    first = start(model, inputs, root, "twice", *runner_options)
    try:
        lease = root / "_claims" / "run=twice.json"
        deadline = time.monotonic() + 120
        while not lease.is_file():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first launch took no lease"
            time.sleep(0.1)
        second = score(model, inputs, root, "twice", *runner_options, timeout=300)
        _, err = first.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode == 2, second.stderr[-3000:]
    assert "run twice" in second.stderr and "held by" in second.stderr
    assert first.returncode == 0, err[-3000:]
    rows = run_rows(root, "twice", "predictions")
    assert len(rows["path"]) == 2000


def test_a_model_swapped_after_the_check_fails_on_the_workers_with_one_line(model, exported, runner_options, tmp_path):
    """The launcher checks the card; the workers re-check the bytes they load: a .tflite replaced
    once the job runs on the cluster fails the run with the model error alone, exit 2, nothing committed."""
    import shutil

    models, inputs, root = tmp_path / "m", tmp_path / "in", tmp_path / "root"
    models.mkdir()
    for src in model.parent.glob(model.stem + ".*"):
        shutil.copyfile(src, models / src.name)
    make_folder(exported, inputs, 2000)
    tflite = models / (model.stem + ".tflite")
    known = {j["jid"] for j in flink_jobs()}
    proc = start(models / model.name, inputs, root, "swapped", *runner_options)
    try:
        wait_for_running_job(proc, known)
        swapped = tmp_path / "swapped.tflite"
        swapped.write_bytes(tflite.read_bytes() + b"tampered")
        os.replace(swapped, tflite)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, stdout[-2000:] + stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "progress:" not in ln]
    assert len(lines) == 1 and "changed since it was checked" in lines[0], stderr[-3000:]
    assert not committed_runs(str(root)) and visible_rows(root, "predictions") == 0
