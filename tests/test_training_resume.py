"""A run killed with SIGKILL after its first epoch resumes when the same command is repeated."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from mnist_batch.report.plots import read_history_csv
from mnist_batch.training import compat

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sigkill_after_first_epoch_then_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    export = tmp_path / "m.keras"
    epochs = 6
    command = [
        sys.executable,
        "-m",
        "mnist_batch",
        "train",
        "--model",
        "mlp-512",
        "--limit",
        "3000",
        "--epochs",
        str(epochs),
        "--run-dir",
        str(run_dir),
        "--export",
        str(export),
        "--progress",
        "epoch",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    meta = compat.backup_metadata_path(run_dir / "backup")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not meta.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert meta.is_file(), "no backup appeared after the first epoch"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        first_out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, first_out[-2000:]
    assert not export.exists(), "the killed run must not have finished"
    done_before = len(read_history_csv(run_dir / "history.csv")["epoch"])
    assert 1 <= done_before < epochs, first_out[-2000:]

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"resuming from epoch {done_before}" in second.stdout
    assert f"epoch {done_before}/{epochs}" not in second.stdout  # completed epochs are not re-run
    assert f"epoch {done_before + 1}/{epochs}" in second.stdout
    assert f"resumed after epoch {done_before}" in second.stdout
    history = read_history_csv(run_dir / "history.csv")
    assert [int(e) for e in history["epoch"]] == list(range(1, epochs + 1))  # each epoch exactly once, from 1
    # Weights and optimiser state were restored: the first resumed epoch trains on from the
    # killed run's weights instead of starting from scratch.
    assert history["loss"][done_before] < history["loss"][0]
    assert export.is_file() and not (run_dir / "backup").exists()
