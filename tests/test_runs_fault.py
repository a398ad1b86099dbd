"""Fault test: a production run SIGKILLed mid-run leaves no ``_SUCCESS``, and rerunning the same
command produces exactly the outputs of a clean run, with no leftover shards or temp files.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.scoring import runs  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
N_FILES = 3000
RUN_ID, RUN_DATE = "fault", "2026-06-01"


def table_rows(run_dir: pathlib.Path, table: str, drop=("scored_at",)) -> dict[str, list]:
    """A run's table as columns, rows sorted by every non-float column (order-free comparison)."""
    data = pq.read_table(run_dir / table).to_pydict()
    for column in drop:
        data.pop(column, None)
    keys = [c for c in data if c not in ("probabilities", "confidence", "precision", "recall", "f1")]
    order = sorted(range(len(next(iter(data.values())))), key=lambda i: tuple(str(data[c][i]) for c in keys))
    return {c: [v[i] for i in order] for c, v in data.items()}


def assert_same_rows(got: dict[str, list], expected: dict[str, list]) -> None:
    assert got.keys() == expected.keys()
    for column, values in expected.items():
        if column in ("probabilities", "confidence", "precision", "recall", "f1"):
            np.testing.assert_allclose(np.asarray(got[column]), np.asarray(values), rtol=1e-5, atol=1e-6)
        else:
            assert got[column] == values, column


def test_sigkill_mid_run_then_rerun_equals_a_clean_run(tiny_model, sample_data, tmp_path):
    train = sample_data.split("train")
    inputs = tmp_path / "in"
    for i in range(N_FILES):
        folder = inputs / str(train.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[i]).save(folder / f"{i:05d}.png")
    (inputs / "3" / "broken.png").write_bytes(b"\x89PNG not really")
    root = tmp_path / "root"
    command = [
        sys.executable,
        "-m",
        "mnist_batch",
        "score",
        "--model",
        str(tiny_model),
        "--input",
        str(inputs),
        "--output",
        str(root),
        "--layout",
        "runs",
        "--run-id",
        RUN_ID,
        "--run-date",
        RUN_DATE,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run_dir = root / f"dt={RUN_DATE}" / f"run={RUN_ID}"
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # Kill as soon as the first prediction shard is being written: the run is mid-way.
        deadline = time.monotonic() + 180
        while not any(p.is_file() for p in (run_dir / "predictions").rglob("*")):
            assert proc.poll() is None, (
                "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
            )
            assert time.monotonic() < deadline, "no output appeared in 180 s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert run_dir.exists() and not (run_dir / runs.SUCCESS_FILE).exists()
    assert runs.committed_runs(str(root)) == []
    assert runs.read_runs(str(root), "predictions").num_rows == 0  # readers see nothing of the killed run

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"scored {N_FILES:,} of {N_FILES + 1:,} images" in rerun.stdout
    assert (run_dir / runs.SUCCESS_FILE).exists()

    clean_root = tmp_path / "clean"
    runs.run_partitioned(
        ScoreConfig(model=str(tiny_model), inputs=(str(inputs),), output=str(clean_root), run_id=RUN_ID),
        runs.RunOptions(run_date=RUN_DATE),
    )
    clean_dir = clean_root / f"dt={RUN_DATE}" / f"run={RUN_ID}"
    for table in ("predictions", "errors", "confusion", "per_class", "manifest"):
        # scored_at is a timestamp; an error message may name an object address (BytesIO at 0x...).
        drop = ("scored_at", "message")
        assert_same_rows(table_rows(run_dir, table, drop), table_rows(clean_dir, table, drop))
    predictions = table_rows(run_dir, "predictions")
    assert len(predictions["path"]) == N_FILES == len(set(predictions["path"]))
    assert table_rows(run_dir, "errors")["path"] == [str(inputs / "3" / "broken.png")]
    # No leftover shards or temp files: the same files as the clean run, and nothing else under ROOT.
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(clean_dir)) for p in clean_dir.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        str(pathlib.Path(f"dt={RUN_DATE}", f"run={RUN_ID}", f)) for f in files
    ]
    assert runs.read_runs(str(root), "predictions").num_rows == N_FILES
