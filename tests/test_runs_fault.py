"""Fault and concurrency tests against the real CLI: a run SIGKILLed mid-run is invisible to every
reader and cleanable, its rerun equals a clean run; two launches at once never lose rows.
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

from mnist_batch.config import ScoreConfig

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.runstore import runs  # noqa: E402
from mnist_batch.scoring import launch  # noqa: E402
from mnist_batch.tables import RUN_TABLES  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
write_inputs = scoring_fixtures.write_train_digits
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
N_FILES = 3000
RUN_ID, RUN_DATE = "fault", "2026-06-01"


def table_rows(partition: pathlib.Path, drop=("scored_at",)) -> dict[str, list]:
    """A run's table partition as columns, rows sorted by every non-float column (order-free comparison)."""
    data = pq.read_table(partition).to_pydict()
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


def score_command(model, inputs, root, *extra) -> list[str]:
    return [sys.executable, "-m", "mnist_batch", "score", "--model", str(model), "--input", str(inputs),
            "--output", str(root), "--layout", "runs", *extra]  # fmt: skip


ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def visible_rows(root: pathlib.Path, table: str) -> int:
    """Rows a plain reader (pyarrow.dataset over ROOT/<table>, Hive partitions) sees."""
    import pyarrow.dataset as pads

    if not (root / table).exists():
        return 0
    return pads.dataset(root / table, partitioning="hive").count_rows()


def test_sigkill_mid_run_then_rerun_equals_a_clean_run(tiny_model, sample_data, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(sample_data, inputs, N_FILES)
    (inputs / "3" / "broken.png").write_bytes(b"\x89PNG not really")
    root = tmp_path / "root"
    command = score_command(tiny_model, inputs, root, "--run-id", RUN_ID, "--run-date", RUN_DATE)
    proc = subprocess.Popen(
        command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # Kill as soon as the first shard is being written into staging: the run is mid-way.
        deadline = time.monotonic() + 180
        while not any(p.is_file() for p in (root / "_staging").rglob("*.parquet")):
            assert proc.poll() is None, (
                "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
            )
            assert time.monotonic() < deadline, "no output appeared in 180 s"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert runs.committed_runs(str(root)) == []
    # Plain readers and the package's reader see nothing of the killed run.
    assert all(visible_rows(root, table) == 0 for table in RUN_TABLES)
    assert runs.read_runs(str(root), "predictions").num_rows == 0
    # `runs clean` removes the killed launch's staging and its (stale) lease.
    cleaned = subprocess.run(
        [sys.executable, "-m", "mnist_batch", "runs", "clean", str(root)], cwd=REPO, env=ENV, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert cleaned.returncode == 0 and "deleted 1 staging folder(s) and 1 stale lease(s)" in cleaned.stdout
    assert not any((root / "_staging").iterdir())

    rerun = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"scored {N_FILES:,} of {N_FILES + 1:,} images" in rerun.stdout
    assert visible_rows(root, "predictions") == N_FILES

    clean_root = tmp_path / "clean"
    launch.launch(
        ScoreConfig(model=str(tiny_model), inputs=(str(inputs),), output=str(clean_root), run_id=RUN_ID),
        launch.RunOptions(layout="runs", run_date=RUN_DATE),
    )
    for table in RUN_TABLES:
        run_dir = root / table / f"dt={RUN_DATE}" / f"run={RUN_ID}"
        clean_dir = clean_root / table / f"dt={RUN_DATE}" / f"run={RUN_ID}"
        drop = ("scored_at", "message", "started_at", "committed_at")  # times differ between any two runs
        assert_same_rows(table_rows(run_dir, drop), table_rows(clean_dir, drop))
    predictions = table_rows(root / "predictions" / f"dt={RUN_DATE}" / f"run={RUN_ID}")
    assert len(predictions["path"]) == N_FILES == len(set(predictions["path"]))

    # No leftover shards, temp files or leases: the same tree as the clean run (shard names aside).
    def tree(base: pathlib.Path) -> list[str]:
        return sorted(str(p.parent.relative_to(base)) for p in base.rglob("*") if p.is_file())

    assert tree(root) == tree(clean_root)


def test_two_launches_at_the_same_moment_never_both_exit_0_with_rows_missing(tiny_model, sample_data, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(sample_data, inputs, 300)
    root = tmp_path / "root"
    # The same explicit run id, twice at once: one commits every row, the other is refused in one line.
    same = [score_command(tiny_model, inputs, root, "--run-id", "nightly") for _ in range(2)]
    procs = [subprocess.Popen(c, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in same]  # fmt: skip
    results = sorted((p.wait(timeout=300), *p.communicate()) for p in procs)
    (ok_code, ok_out, _), (refused_code, _, refused_err) = results
    assert (ok_code, refused_code) == (0, 2), results
    assert "committed" in ok_out
    error_lines = [line for line in refused_err.splitlines() if line.startswith("mnist-batch: error:")]
    assert len(error_lines) == 1 and ("is held by" in error_lines[0] or "already committed" in error_lines[0])
    assert visible_rows(root, "predictions") == 300
    # Default run ids (time + random), twice in the same second: two committed runs, each complete.
    default = [score_command(tiny_model, inputs, root) for _ in range(2)]
    procs = [subprocess.Popen(c, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in default]  # fmt: skip
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.communicate() for p in procs]
    committed = runs.committed_runs(str(root))
    assert len(committed) == 3 and len({r.run_id for r in committed}) == 3
    table = runs.read_runs(str(root), "predictions")
    assert sorted(table.group_by("run").aggregate([("path", "count")]).column("path_count").to_pylist()) == [300] * 3
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
