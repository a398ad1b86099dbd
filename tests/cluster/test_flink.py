"""``mnist-batch score`` on the Flink cluster of ``make cluster-up`` against DirectRunner, everything on the bucket.

The cluster's worker hosts share nothing with this process (deploy/flink/host.sh: their own mount,
PID and UTS namespaces; the checkout, /tmp and home hidden; the package installed from its wheel),
so the model, the inputs and the run store are on the bucket of ``make s3-up``, whose ``AWS_*``
variables both this process and the hosts have (``.ci/run`` starts them so). Each run is the real
CLI as a process; fault tests kill a whole worker host, the launcher, or change what the hosts are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from flink_cluster import CLUSTER_SH, REPO, client, env, key_of, new_prefix, put, s3_env, upload_folder

from mnist_batch.runstore import fs
from mnist_batch.runstore.history import committed_runs
from mnist_batch.runstore.runs import read_runs
from mnist_batch.runstore.shards import shard_paths, shard_rows

import scoring_fixtures

pytestmark = pytest.mark.cluster

N_FILES = 5_000
RUN_DATE = "2026-12-03"
RUN_TIMEOUT_S = 1200
REST = "http://127.0.0.1:" + os.environ.get("FLINK_REST_PORT", "8081")


@pytest.fixture(scope="session", autouse=True)
def bucket_settings():
    """This process reads the bucket with the same settings as the hosts (``make s3-up``'s)."""
    saved = dict(os.environ)
    os.environ.update(s3_env())
    fs.configure()
    try:
        client().head_bucket(Bucket="mnist-batch")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the bucket of make s3-up does not answer ({exc}): make s3-up first", pytrace=False)
    yield
    os.environ.clear()
    os.environ.update(saved)
    fs.configure()


def score_command(model, inputs, root, run_id, *extra) -> list[str]:
    return [sys.executable, "-m", "mnist_batch", "score", "--model", str(model), "--input", str(inputs),
            "--output", str(root), "--layout", "runs", "--run-id", run_id, "--run-date", RUN_DATE, *extra]  # fmt: skip


def score(model, inputs, root, run_id, *extra, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    command = score_command(model, inputs, root, run_id, *extra)
    return subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)


def start(model, inputs, root, run_id, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        score_command(model, inputs, root, run_id, *extra),
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ok(proc) -> str:
    assert proc.returncode == 0, (proc.stdout or "")[-2000:] + (proc.stderr or "")[-4000:]
    return proc.stdout


def one_error_line(proc, stderr: str | None = None) -> str:
    """The command's stderr, which must be exactly one line (progress lines aside), exit 2."""
    stderr = proc.stderr if stderr is None else stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "progress:" not in ln]
    assert proc.returncode == 2 and len(lines) == 1, stderr[-4000:]
    return lines[0]


def run_rows(root: str, run_id: str, table: str) -> dict:
    runs = [r for r in committed_runs(root) if r.run_id == run_id]
    assert len(runs) == 1, f"run {run_id} is not committed once under {root}"
    return read_runs(root, table, runs).to_pydict()


def summary(root: str, run_id: str) -> dict:
    return json.loads(fs.read_text(f"{root}/_runs/dt={RUN_DATE}/run={run_id}/summary.json"))


def visible_rows(root: str, table: str) -> int:
    """Rows a plain reader of ROOT/<table>/ sees (every shard under it)."""
    return sum(shard_rows(p) for p in shard_paths(f"{root}/{table}"))


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


def wait_for_first_shard(proc: subprocess.Popen, root: str, seconds: float = 300) -> None:
    """Until the job writes its first predictions shard into staging: scoring is under way."""
    deadline = time.monotonic() + seconds
    while not [p for p in fs.list_files(f"{root}/_staging") if "/predictions/" in p and p.endswith(".parquet")]:
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be interrupted:\n" + proc.stderr.read()[-3000:])
        assert time.monotonic() < deadline, "no predictions shard appeared"
        time.sleep(0.1)


def job_state(jid: str) -> str:
    with urllib.request.urlopen(f"{REST}/jobs/{jid}", timeout=10) as r:
        return json.load(r)["state"]


def wait_job_ended(jid: str, seconds: float = 600) -> str:
    deadline = time.monotonic() + seconds
    while (state := job_state(jid)) not in ("FINISHED", "FAILED", "CANCELED"):
        assert time.monotonic() < deadline, f"job {jid} still {state}"
        time.sleep(1)
    return state


def cluster(*args: str, extra_env: dict | None = None, drop: tuple[str, ...] = ()) -> str:
    run_env = {k: v for k, v in {**env(), **(extra_env or {})}.items() if k not in drop}
    done = subprocess.run([str(CLUSTER_SH), *args], cwd=REPO, env=run_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextlib.contextmanager
def hosts_restarted(extra_env: dict | None = None, drop: tuple[str, ...] = ()):
    """Every worker host restarted with other settings for the block, then as ``make cluster-up`` made them."""
    try:
        for n in ("1", "2"):  # one at a time: restart-host waits for every host to be registered
            cluster("kill-host", n)
            cluster("restart-host", n, extra_env=extra_env, drop=drop)
        yield
    finally:
        for n in ("1", "2"):
            with contextlib.suppress(AssertionError):
                cluster("kill-host", n)
            cluster("restart-host", n)


@pytest.fixture(scope="session")
def runner_options() -> list[str]:
    """The ``runner options: ...`` of ``cluster.sh`` (the cluster must be up)."""
    status = subprocess.run([str(CLUSTER_SH), "status"], capture_output=True, text=True, cwd=REPO)
    if status.returncode != 0:
        pytest.fail(f"the Flink cluster is not up (make cluster-up):\n{status.stdout}", pytrace=False)
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("runner options: "))
    return line.removeprefix("runner options: ").split()


@pytest.fixture(scope="session")
def local_model(tmp_path_factory):
    """A small CNN with its LiteRT file (the runtime workers use), trained on the bundled sample."""
    return scoring_fixtures.train_tiny_model(tmp_path_factory.mktemp("cluster_model"), litert=True)


def upload_model(local_model, prefix: str) -> str:
    for path in local_model.parent.glob(local_model.stem + ".*"):
        put(f"{prefix}/{path.name}", path.read_bytes())
    return f"{prefix}/{local_model.name}"


@pytest.fixture(scope="session")
def model(local_model) -> str:
    return upload_model(local_model, new_prefix("model"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The bundled sample's test split (2,000 real digits) as PNG files, as the CLI exports it."""
    out = tmp_path_factory.mktemp("exported") / "test_images"
    command = [sys.executable, "-m", "mnist_batch", "data", "export-images", "sample", "--split", "test", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, env=env(), capture_output=True)
    return out


@pytest.fixture(scope="module")
def files(exported) -> str:
    """N_FILES real digits on the bucket, one damaged PNG (an error row) and one text file (skipped)."""
    folder = new_prefix("in")
    upload_folder(exported, folder, N_FILES)
    put(f"{folder}/3/broken.png", b"\x89PNG not really")
    put(f"{folder}/notes.txt", b"not an image")
    return folder + "/"


@pytest.fixture(scope="module")
def direct(model, files):
    root = new_prefix("direct")
    ok(score(model, files, root, "direct"))
    return root


def sorted_rows(rows: dict) -> dict:
    order = np.argsort(rows["path"])
    return {k: [v[i] for i in order] for k, v in rows.items()}


def test_on_the_bucket_flink_equals_directrunner_row_for_row(model, files, direct, runner_options):
    root = new_prefix("flink")
    proc = score(model, files, root, "flink", *runner_options)
    out = ok(proc)
    assert f"scored {N_FILES:,} of {N_FILES + 1:,} images" in out
    # The launcher prints progress from the workers' progress files on the bucket while the job runs.
    progress = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert progress and all(line.endswith("files/s (reported by the workers)") for line in progress), proc.stderr[
        -2000:
    ]
    assert not [p for p in fs.list_files(f"{root}/_staging") if "/_progress/" in p], (
        "the progress files go with the staging"
    )
    flink, want = summary(root, "flink"), summary(direct, "direct")
    assert flink["runner"] == "PortableRunner" and want["runner"] == "DirectRunner"
    assert flink["runtime"] == want["runtime"] == "litert"
    for key in ("counts", "accuracy", "macro_f1", "errors_by_stage", "skipped_by_reason"):
        assert flink[key] == want[key], key
    got, expected = (
        sorted_rows(run_rows(root, "flink", "predictions")),
        sorted_rows(run_rows(direct, "direct", "predictions")),
    )
    assert len(got["path"]) == len(set(got["path"])) == N_FILES
    assert got["path"] == expected["path"] and got["predicted_label"] == expected["predicted_label"]
    assert got["model_id"] == expected["model_id"] and len(set(got["model_id"])) == 1
    np.testing.assert_allclose(
        np.asarray(got["probabilities"]), np.asarray(expected["probabilities"]), atol=1e-5, rtol=0
    )
    for table, columns in (("errors", ("path", "stage")), ("manifest", ("path", "size"))):
        g, w = run_rows(root, "flink", table), run_rows(direct, "direct", table)
        assert sorted(zip(*(g[c] for c in columns), strict=True)) == sorted(zip(*(w[c] for c in columns), strict=True))
    assert len(run_rows(root, "flink", "errors")["path"]) == 1


def test_incremental_flink_after_directrunner_and_the_reverse(model, exported, runner_options):
    inputs, root = new_prefix("inc-in"), new_prefix("inc")
    upload_folder(exported, inputs, 600)
    assert "scored 600 of 600 images" in ok(score(model, inputs + "/", root, "d1", "--incremental"))
    new = upload_folder(exported, inputs, 250, start=600)
    ok(score(model, inputs + "/", root, "f2", "--incremental", *runner_options))
    assert sorted(run_rows(root, "f2", "predictions")["path"]) == sorted(new)
    newer = upload_folder(exported, inputs, 150, start=850)
    ok(score(model, inputs + "/", root, "d3", "--incremental"))
    assert sorted(run_rows(root, "d3", "predictions")["path"]) == sorted(newer)
    rows = read_runs(root, "predictions").to_pydict()
    assert len(rows["path"]) == len(set(rows["path"])) == 1000


def test_a_local_path_is_refused_before_anything_runs(model, runner_options, tmp_path):
    known = {j["jid"] for j in flink_jobs()}
    for args in ((model, tmp_path, new_prefix("x")), (model, "s3://mnist-batch/none/", tmp_path / "out")):
        line = one_error_line(score(*args, "local", *runner_options, timeout=120))
        assert "a path on this machine, which the workers of PortableRunner (on other hosts) cannot read" in line
    assert {j["jid"] for j in flink_jobs()} == known  # no job was submitted


def test_a_worker_host_killed_mid_run_commits_whole_or_nothing(model, files, runner_options):
    root = new_prefix("hostkill")
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, files, root, "hostkill", *runner_options)
    try:
        jid = wait_for_running_job(proc, known)
        wait_for_first_shard(proc, root)  # the fused read -> decode -> infer stage is writing rows
        cluster("kill-host", "1", "--no-wait")  # the TaskManager, its pool and harnesses: the whole PID namespace
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        cluster("restart-host", "1")
    state = job_state(jid)
    print(f"worker host killed mid-run: launcher exit {proc.returncode}, Flink job {state}")
    if proc.returncode == 0:  # Flink restarted the job on the host left, and it committed whole
        assert state == "FINISHED" and f"scored {N_FILES:,} of {N_FILES + 1:,} images" in stdout
        rows = run_rows(root, "hostkill", "predictions")
        assert len(rows["path"]) == len(set(rows["path"])) == N_FILES
    else:  # the job failed: nothing of the run is visible
        assert state in ("FAILED", "CANCELED") and "nothing committed" in stderr, stderr[-3000:]
        assert not committed_runs(root) and visible_rows(root, "predictions") == 0
    clean = subprocess.run([sys.executable, "-m", "mnist_batch", "runs", "clean", root], cwd=REPO, env=env(),
                           capture_output=True, text=True)  # fmt: skip
    assert clean.returncode == 0, clean.stderr[-2000:]
    ok(score(model, files, root, "hostkill2", "--incremental", *runner_options))
    rows = read_runs(root, "predictions").to_pydict()
    assert len(rows["path"]) == len(set(rows["path"])) == N_FILES


def test_launcher_sigkilled_mid_run_commits_whole_or_nothing(model, files, runner_options):
    root = new_prefix("lkill")
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, files, root, "lkill", *runner_options)
    try:
        jid = wait_for_running_job(proc, known)
        wait_for_first_shard(proc, root)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # The job runs on. Its commit step commits only while the launch's lease is live: on this host the
    # launcher's process is asked for, on another host (these share nothing) only the lease's heartbeat,
    # which stops with the launcher and goes stale after the lease's ttl. So the run commits whole, or
    # the job fails with LaunchGoneError and nothing is visible; never a part.
    state = wait_job_ended(jid, seconds=RUN_TIMEOUT_S)
    print(f"launcher SIGKILLed mid-run: Flink job {state}")
    if state == "FINISHED":
        rows = run_rows(root, "lkill", "predictions")
        assert len(rows["path"]) == len(set(rows["path"])) == N_FILES
    else:
        assert state == "FAILED"
        with urllib.request.urlopen(f"{REST}/jobs/{jid}/exceptions", timeout=10) as r:
            assert "LaunchGoneError" in json.dumps(json.load(r))
        assert not committed_runs(root) and visible_rows(root, "predictions") == 0
    ok(score(model, files, root, "lkill2", "--incremental"))  # whatever happened, the next run completes the set
    rows = read_runs(root, "predictions").to_pydict()
    assert len(rows["path"]) == len(set(rows["path"])) == N_FILES


def test_two_launches_of_one_run_id_one_refused(model, exported, runner_options):
    inputs, root = new_prefix("twice-in"), new_prefix("twice")
    upload_folder(exported, inputs, 2000)
    first = start(model, inputs + "/", root, "twice", *runner_options)
    try:
        deadline = time.monotonic() + 120
        while not fs.exists(f"{root}/_claims/run=twice.json"):
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first launch took no lease"
            time.sleep(0.1)
        second = score(model, inputs + "/", root, "twice", *runner_options, timeout=300)
        _, err = first.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode == 2 and "run twice" in second.stderr and "held by" in second.stderr, second.stderr[-3000:]
    assert first.returncode == 0, err[-3000:]
    assert len(run_rows(root, "twice", "predictions")["path"]) == 2000


def test_a_model_swapped_after_the_check_fails_on_the_workers_with_one_line(local_model, exported, runner_options):
    """The launcher checks the card; the workers re-check the bytes they load: a .tflite replaced on the
    bucket once the job runs fails the run with the model error alone, exit 2, nothing committed."""
    model, inputs, root = upload_model(local_model, new_prefix("swap-model")), new_prefix("swap-in"), new_prefix("swap")
    upload_folder(exported, inputs, 2000)
    tflite = model.removesuffix(".keras") + ".tflite"
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, inputs + "/", root, "swapped", *runner_options)
    try:
        wait_for_running_job(proc, known)
        put(tflite, client().get_object(Bucket="mnist-batch", Key=key_of(tflite))["Body"].read() + b"tampered")
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "changed since it was checked" in one_error_line(proc, stderr)
    assert not committed_runs(root) and visible_rows(root, "predictions") == 0


AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")


def test_hosts_without_bucket_settings_one_line_then_the_launcher_hands_them(model, exported, runner_options):
    """Where a user puts the bucket settings: the hosts' own environment (as every test here), or the
    job's ``--s3_*`` options, which the launcher hands to every step. Neither: one line, exit 2."""
    inputs = new_prefix("nocred-in")
    upload_folder(exported, inputs, 200)
    with hosts_restarted(drop=AWS):
        root = new_prefix("nocred")
        line = one_error_line(score(model, inputs + "/", root, "nocred", *runner_options, timeout=600))
        assert line.startswith("mnist-batch: error: run nocred failed, nothing committed: "), line
        assert not committed_runs(root) and visible_rows(root, "predictions") == 0
        settings = s3_env()
        handed = ["--s3_endpoint_url", settings["AWS_ENDPOINT_URL"], "--s3_access_key_id", settings["AWS_ACCESS_KEY_ID"],
                  "--s3_secret_access_key", settings["AWS_SECRET_ACCESS_KEY"], "--s3_region_name", settings["AWS_REGION"]]  # fmt: skip
        ok(score(model, inputs + "/", root, "handed", *runner_options, *handed))
        assert len(run_rows(root, "handed", "predictions")["path"]) == 200


def test_a_worker_of_another_version_fails_the_run_in_one_line(model, exported, runner_options, tmp_path):
    """Worker hosts whose installed package is another version (their image from another release):
    the first step's setup on them stops the run; one line names both versions; nothing committed."""
    venv = REPO / ".cache" / "flink" / "worker-venv"
    skewed = tmp_path.parent / "worker-venv-skewed"  # outside /tmp's view of the hosts? bind-mounted by host.sh
    subprocess.run(["cp", "-a", str(venv), str(skewed)], check=True)
    init = next(skewed.glob("lib/python3.*/site-packages/mnist_batch/__init__.py"))
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.0+old-', 1))
    inputs = new_prefix("skew-in")
    upload_folder(exported, inputs, 50)
    try:
        with hosts_restarted(extra_env={"MNIST_BATCH_WORKER_VENV": str(skewed)}):
            root = new_prefix("skew")
            line = one_error_line(score(model, inputs + "/", root, "skew", *runner_options, timeout=600))
            assert "the workers run mnist-batch 0.0.0+old-" in line and "but the launcher " in line, line
            assert line.endswith("nothing was committed"), line
            assert not committed_runs(root) and visible_rows(root, "predictions") == 0
    finally:
        subprocess.run(["rm", "-rf", str(skewed)], check=False)


def test_the_jobmanager_killed_mid_run_one_line_nothing_committed(model, files, runner_options):
    """The JobManager SIGKILLed once scoring is under way: the job server loses the cluster, the launcher
    exits 2 with one line, nothing committed. The cluster is then made again (down, up) for what follows."""
    root = new_prefix("jmkill")
    known = {j["jid"] for j in flink_jobs()}
    proc = start(model, files, root, "jmkill", *runner_options)
    try:
        wait_for_running_job(proc, known)
        wait_for_first_shard(proc, root)
        jobmanager = int((REPO / ".cache" / "flink" / "run" / "jobmanager.pid").read_text())
        os.killpg(jobmanager, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        cluster("down")
        cluster("up")
    line = one_error_line(proc, stderr)
    assert line.startswith("mnist-batch: error: run jmkill failed, nothing committed: the job "), line
    assert not committed_runs(root) and visible_rows(root, "predictions") == 0
