"""The run store on an object store: ``fakestore://`` (no folders, copy-and-delete renames, URIs)
exercises every object-store code path of listing, staging, commit, leases and reading.
"""

from __future__ import annotations

import json

import fake_object_store
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import claims, fs, runs  # noqa: E402
from mnist_batch.runstore.errors import RunStoreError  # noqa: E402
from mnist_batch.scoring.errors import ScoringError  # noqa: E402
from mnist_batch.scoring.launch import RunOptions, launch  # noqa: E402
from mnist_batch.tables import LAYOUT_FILE, RUN_TABLES  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    fake_object_store.ROOT["path"] = str(tmp_path / "objects")
    yield "fakestore://bucket/scored [x]"
    fake_object_store.ROOT["path"] = None


def test_runs_layout_on_an_object_store(tiny_model, sample_data, tmp_path, store, capsys):
    test = sample_data.split("test")
    for i in range(9):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")

    def score(run_id, **options):
        config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=store, run_id=run_id)
        return launch(config, RunOptions(layout="runs", **options))

    first = score("n1", run_date="2026-07-01", incremental=True)
    assert first["counts"]["scored"] == 9
    assert fs.exists(fs.join(store, LAYOUT_FILE))
    objects = fs.list_files(store)
    assert all(o.startswith(store + "/") for o in objects)
    for table in RUN_TABLES:
        assert any(o.startswith(f"{store}/{table}/dt=2026-07-01/run=n1/part-") for o in objects), table
    assert not any("/_staging/" in o or "/_claims/" in o for o in objects)  # moved, released
    second = score("n2", run_date="2026-07-02", incremental=True)
    assert second["counts"]["matched"] == 0 and second["incremental"]["skipped"] == 9 and second["exit_code"] == 0
    assert [r.run_id for r in runs.committed_runs(store)] == ["n1", "n2"]
    table = runs.read_runs(store, "predictions")
    assert table.num_rows == 9 and set(table.column("run").to_pylist()) == {"n1"}
    with pytest.raises(ScoringError, match="already committed"):
        score("n1", run_date="2026-07-01")
    replaced = score("n1", run_date="2026-07-03", replace=True)
    assert replaced["counts"]["scored"] == 9
    assert [(r.dt, r.run_id) for r in runs.committed_runs(store)] == [("2026-07-02", "n2"), ("2026-07-03", "n1")]
    assert not any("dt=2026-07-01" in o for o in fs.list_files(store))
    # A lease on an object store: check-then-write; a live holder refuses a second launch.
    held = claims.claim(store, "run=busy", run_id="busy", attempt="busy.1")
    with pytest.raises(claims.ClaimError, match="held by"):
        score("busy")
    held.release()
    summary = json.loads(fs.read_text(f"{store}/_runs/dt=2026-07-03/run=n1/_SUCCESS"))
    assert summary["counts"]["scored"] == 9 and summary["output"] == store
    shard = next(o for o in fs.list_files(f"{store}/errors/dt=2026-07-03/run=n1"))
    with apache_beam.io.filesystems.FileSystems.open(shard) as f:
        assert pq.read_table(f).num_rows == 0  # a table with no rows has an empty shard with its schema
    assert cli_main(["runs", "list", store]) == 0 and "2 committed run(s)" in capsys.readouterr().out


def test_flat_layout_on_an_object_store(tiny_model, sample_data, tmp_path, store):
    test = sample_data.split("test")
    for i in range(4):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=store)
    assert launch(config)["counts"]["scored"] == 4
    with pytest.raises(RunStoreError, match="earlier run's outputs"):
        launch(config)
    import dataclasses

    assert launch(dataclasses.replace(config, overwrite=True))["counts"]["scored"] == 4
    shards = [o for o in fs.list_files(store) if "/predictions/" in o]
    assert len(shards) == 1 and fs.exists(f"{store}/_SUCCESS")
