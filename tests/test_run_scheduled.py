"""deploy/run_scheduled.sh and deploy/cron/crontab run as documented, with the real scorer and monitor.

A tree shaped like a clone after ``make demo`` (``out/demo/models/cnn.keras`` + card, the held-out
digits in ``out/demo/test_images``, ``.venv/bin/mnist-batch``, ``deploy/``) gets:

* night 1: the crontab's line as installed, run the way cron runs it (``/bin/sh -c``, cron's
  ``PATH=/usr/bin:/bin``): exit 0, one committed run, ``monitor ok`` and its page;
* night 2: the README's by-hand command with the monitor, after new files of one class arrive:
  only the new files are scored (incremental) and the monitor flags the class mix: exit 5;
* night 3: two overlapping starts of the README's by-hand command: the second exits 75 without
  starting anything, the first commits its run;
* a failing scorer (a model path that does not exist): the CLI's exit 2 and its one line, nothing
  committed.

The exit codes are the ones ``run_scheduled.sh``'s header promises (0, 2, 5, 75). The fake-scorer
tests of the wrapper's argument passing and log lines are in ``tests/test_deploy.py``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

import scoring_fixtures

sample_data = scoring_fixtures.sample_data
REPO = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CRON_PATH = "/usr/bin:/bin"
CLONE_PLACEHOLDER = "/srv/mnist_batch"

pytestmark = pytest.mark.slow


def readme_wrapper_commands() -> list[str]:
    """deploy/README.md's commands that start ``run_scheduled.sh`` (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "README.md").read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.startswith("MNIST_BATCH_MODEL=")]


def crontab_line() -> tuple[str, str]:
    """The crontab's one job: (schedule, command)."""
    jobs = [
        line
        for line in (DEPLOY / "cron" / "crontab").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    (job,) = jobs
    fields = job.split(None, 5)
    return " ".join(fields[:5]), fields[5]


def write_digits(folder: pathlib.Path, data, indices) -> None:
    from PIL import Image

    for i in indices:
        label = int(data.labels[i])
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(folder / str(label) / f"{i:05d}.png")


@pytest.fixture
def clone(tmp_path) -> pathlib.Path:
    """A tree shaped like a clone after ``make demo``: the demo's model path, test images, .venv, deploy/."""
    root = tmp_path / "clone"
    models = root / "out" / "demo" / "models"
    scoring_fixtures.train_tiny_model(models, name="cnn", litert=True)  # as the demo exports it (cached)
    (root / "deploy").symlink_to(DEPLOY, target_is_directory=True)
    venv = pathlib.Path(sys.executable).parent.parent
    assert (venv / "bin" / "mnist-batch").is_file(), "the tests run in the project's virtualenv (make test)"
    (root / ".venv").symlink_to(venv, target_is_directory=True)
    return root


def shell_env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    """A user's shell in the clone; the lock and logs of by-hand runs kept inside the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_BATCH_")}
    env |= {"MNIST_BATCH_LOCK": str(tmp_path / "by-hand.lock"), "MNIST_BATCH_LOG_DIR": str(tmp_path / "logs")}
    return env | extra


def committed_runs(runs_root: pathlib.Path) -> list[str]:
    return sorted(p.parent.name.removeprefix("run=") for p in runs_root.glob("_runs/dt=*/run=*/_SUCCESS"))


def runs_list(runs_root: pathlib.Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mnist_batch", "runs", "list", str(runs_root)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_documented_nights_lock_and_flagged_monitor(tmp_path, clone, sample_data):
    test = sample_data.split("test")
    images = clone / "out" / "demo" / "test_images"
    # 300 held-out digits of every class (the split is sorted by class)
    first_files = set(range(0, 2000, 20)) | set(range(7, 2000, 10))
    assert len(first_files) == 300
    write_digits(images, test, first_files)
    runs_root = clone / "out" / "runs"

    # Night 1: the crontab line as cron runs it.
    schedule, command = crontab_line()
    assert schedule == "15 2 * * *" and CLONE_PLACEHOLDER in command
    command = command.replace(CLONE_PLACEHOLDER, str(clone))
    cron_env = {"PATH": CRON_PATH, "HOME": str(tmp_path / "home"), "SHELL": "/bin/sh", "LOGNAME": "root"}
    night1 = subprocess.run(["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True, timeout=600)
    cron_log = (clone / "out" / "logs" / "cron.log").read_text(encoding="utf-8")
    assert night1.returncode == 0, cron_log + night1.stdout + night1.stderr
    assert "ok: scored 300 of 300 images" in cron_log, cron_log
    assert "monitor ok: latest run " in cron_log, cron_log
    assert (clone / "out" / "monitor" / "monitor.html").is_file()
    (first,) = committed_runs(runs_root)
    assert (clone / "out" / "logs" / f"score-{first}.log").is_file()

    # Night 2: 150 new files, all 1s, with the README's by-hand command and the monitor.
    ones = [i for i in range(len(test.labels)) if int(test.labels[i]) == 1 and i not in first_files][:150]
    assert len(ones) >= 120  # above --min-scored (100): the PSI checks run
    write_digits(images, test, ones)
    by_hand_monitor, by_hand = readme_wrapper_commands()
    assert "MNIST_BATCH_MONITOR_DIR=out/monitor" in by_hand_monitor and "MONITOR" not in by_hand
    night2 = subprocess.run(
        ["bash", "-c", by_hand_monitor], cwd=clone, env=shell_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert night2.returncode == 5, night2.stdout + night2.stderr
    new_only = f"ok: scored {len(ones)} of {len(ones)} images (0 errors, 300 skipped"  # incremental: only the new files
    assert new_only in night2.stdout, night2.stdout
    assert re.search(r"monitor FLAGGED: class_mix: run \S+ .*PSI", night2.stdout), night2.stdout
    assert "monitor FLAGGED the run (exit 5; page: out/monitor/monitor.html" in night2.stdout
    assert len(committed_runs(runs_root)) == 2  # the flagged run is committed; the monitor only reports it

    # Night 3: two overlapping starts; the second exits 75 and starts nothing.
    env = shell_env(tmp_path, MNIST_BATCH_RUN_ID="night3")
    first_start = subprocess.Popen(
        ["bash", "-c", by_hand], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started = tmp_path / "logs" / "score-night3.log"  # opened once the lock is held
    deadline = time.monotonic() + 120
    while not started.exists() and first_start.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists() and first_start.poll() is None, "the first start should be scoring by now"
    second = subprocess.run(
        ["bash", "-c", by_hand], cwd=clone, env=shell_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 75, second.stdout + second.stderr
    assert "another run holds " in second.stdout and "not starting (exit 75)" in second.stdout
    out, _ = first_start.communicate(timeout=600)
    assert first_start.returncode == 0, out
    assert re.search(rf"ok: scored 0 of 0 images \(0 errors, {300 + len(ones)} skipped", out), out  # nothing new
    assert sorted(p.name for p in (tmp_path / "logs").glob("score-*.log")) == sorted(
        f"score-{r}.log" for r in committed_runs(runs_root) if r != first
    )  # the refused start wrote no log: it never ran the scorer
    runs = committed_runs(runs_root)
    assert len(runs) == 3 and "night3" in runs
    listing = runs_list(runs_root)
    assert all(r in listing for r in runs), listing


def test_a_failing_scorer_exits_with_its_code_and_commits_nothing(tmp_path, clone, sample_data):
    images = clone / "out" / "demo" / "test_images"
    write_digits(images, sample_data.split("test"), range(20))
    by_hand = readme_wrapper_commands()[0]
    command = by_hand.replace("out/demo/models/cnn.keras", "out/demo/models/missing.keras")
    failed = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=shell_env(tmp_path, MNIST_BATCH_RUN_ID="bad"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode == 2, failed.stdout + failed.stderr
    line = re.search(r"FAILED with exit 2: (.*) \(log: ", failed.stdout)
    assert line and line.group(1).startswith("mnist-batch: error: ") and "missing.keras" in line.group(1), failed.stdout
    assert not (tmp_path / "logs" / "monitor-bad.log").exists()  # no monitor after a failed score
    assert committed_runs(clone / "out" / "runs") == []
