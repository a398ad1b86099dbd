"""The real thing: two MultiWorkerMirroredStrategy workers on 127.0.0.1 (one process each)."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_npz

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = pathlib.Path(__file__).resolve().parent / "training_worker.py"


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
@pytest.mark.parametrize("model,ema", [("cnn", False), ("cnn", True)], ids=["cnn", "cnn-ema-patience"])
def test_two_workers_train_to_identical_weights_and_only_the_chief_exports(tmp_path, model, ema):
    keras = pytest.importorskip("keras")
    from mnist_batch.model_card import read_card

    data = tmp_path / "small.npz"
    write_npz(data, n_train=96, n_test=20)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir, export = tmp_path / "run", tmp_path / "models" / "mw.keras"
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["CUDA_VISIBLE_DEVICES"] = ""
        args = [
            sys.executable,
            str(WORKER),
            str(data),
            str(run_dir),
            str(export),
            str(tmp_path / f"w{index}.npz"),
            model,
            *(["ema"] if ema else []),
        ]
        procs.append(subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=240)
            outputs.append(out.decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    assert f"chief=True replicas=2 epochs=1 ema={ema}" in outputs[0]
    assert f"chief=False replicas=2 epochs=1 ema={ema}" in outputs[1]

    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:  # trainable weights AND batch-norm statistics
        assert np.array_equal(w0[key], w1[key]), key

    card = read_card(export)
    assert card.strategy == "MultiWorkerMirroredStrategy" and card.replicas == 2 and card.epochs == 1
    loaded = keras.models.load_model(export, safe_mode=True)
    for a, b in zip(loaded.get_weights(), (w0[k] for k in w0.files), strict=True):
        assert np.array_equal(a, b)
    # Only the chief wrote the run dir; the worker's private copies were removed.
    assert (run_dir / "history.csv").is_file() and (run_dir / "checkpoints" / "best.keras").is_file()
    worker_dir = run_dir / ".workers" / "worker-1"
    assert not (worker_dir / "history.csv").exists() and not (worker_dir / "checkpoints").exists()
