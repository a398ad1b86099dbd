"""The same small job on three runners gives the same outputs: DirectRunner in memory,
DirectRunner multi_processing with 2 worker processes, and the portable runner through
Beam's local job service with LOOPBACK workers (the path Flink, Spark and Dataflow use).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.scoring.launch import run_scoring  # noqa: E402

import scoring_fixtures  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    test = sample_data.split("test")
    for i in range(40):
        folder = root / "in" / str(test.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(folder / f"{i:05d}.png")
    (root / "in" / "7").mkdir(exist_ok=True)
    (root / "in" / "7" / "broken.png").write_bytes(b"GIF89a broken")
    (root / "in" / "notes.txt").write_text("skip", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def direct(tiny_model, job):
    out = job / "direct"
    summary = run_scoring(ScoreConfig(model=str(tiny_model), inputs=(str(job / "in"),), output=str(out)))
    return read_outputs(out), summary


def read_outputs(out: pathlib.Path) -> dict:
    predictions = pq.read_table(out / "predictions").to_pydict()
    order = np.argsort(predictions["path"])
    errors = pq.read_table(out / "errors").to_pydict()
    confusion = pq.read_table(out / "confusion").to_pydict()
    return {
        "paths": [predictions["path"][i] for i in order],
        "predicted": [predictions["predicted_label"][i] for i in order],
        "true": [predictions["true_label"][i] for i in order],
        "probabilities": np.asarray([predictions["probabilities"][i] for i in order], dtype=np.float32),
        "errors": sorted(zip(errors["path"], errors["stage"], strict=True)),
        "confusion": sorted(
            zip(confusion["true_label"], confusion["predicted_label"], confusion["count"], strict=True)
        ),
        "summary": json.loads((out / "summary.json").read_text(encoding="utf-8")),
    }


def assert_same_outputs(got: dict, expected: dict) -> None:
    assert got["paths"] == expected["paths"] and len(got["paths"]) == 40
    assert got["predicted"] == expected["predicted"]
    assert got["true"] == expected["true"]
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert got["errors"] == expected["errors"] and len(got["errors"]) == 1
    assert got["confusion"] == expected["confusion"]
    for key in ("counts", "accuracy", "macro_f1", "errors_by_stage", "skipped_by_reason"):
        assert got["summary"][key] == expected["summary"][key], key


def run_cli(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "mnist_batch", "score", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_direct_multi_processing_two_workers(tiny_model, job, direct):
    out = job / "multi"
    proc = run_cli(
        [
            "--model",
            str(tiny_model),
            "--input",
            str(job / "in"),
            "--output",
            str(out),
            "--direct_running_mode",
            "multi_processing",
            "--direct_num_workers",
            "2",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scored 40 of 41 images" in proc.stdout
    assert_same_outputs(read_outputs(out), direct[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_portable_runner_through_the_local_job_service(tiny_model, job, direct):
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert service.poll() is None, "job service exited"
                assert time.monotonic() < deadline, "job service did not start"
                time.sleep(0.3)
        out = job / "portable"
        proc = run_cli(
            [
                "--model",
                str(tiny_model),
                "--input",
                str(job / "in"),
                "--output",
                str(out),
                "--runner",
                "PortableRunner",
                "--job_endpoint",
                f"localhost:{port}",
                "--environment_type",
                "LOOPBACK",
            ]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = read_outputs(out)
        assert got["summary"]["runner"] == "PortableRunner"
        assert_same_outputs(got, direct[0])
    finally:
        service.terminate()
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    assert service.poll() is not None
