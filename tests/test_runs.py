"""Production runs (``--layout runs``): ROOT/dt=/run= folders committed with _SUCCESS, reruns that
replace a run completely, incremental runs, and the model pin.
"""

from __future__ import annotations

import json
import os
import pathlib

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.scoring import runs  # noqa: E402
from mnist_batch.scoring.errors import ScoringError  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.slow


def write_digits(sample_data, folder: pathlib.Path, indices) -> list[str]:
    """Test digits ``indices`` as folder/<label>/<index>.png; returns their paths."""
    test = sample_data.split("test")
    paths = []
    for i in indices:
        path = folder / str(test.labels[i]) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
        paths.append(str(path))
    return paths


def score(model, inputs, root, run_id, wait=True, **options):
    config = ScoreConfig(model=str(model), inputs=(str(inputs),), output=str(root), run_id=run_id)
    return runs.run_partitioned(config, runs.RunOptions(**options), wait=wait)


def predicted_paths(run_dir: pathlib.Path) -> list[str]:
    return sorted(pq.read_table(run_dir / "predictions").column("path").to_pylist())


def test_layout_commit_marker_and_one_table_over_runs(tiny_model, sample_data, tmp_path):
    write_digits(sample_data, tmp_path / "in", range(12))
    root = tmp_path / "root"
    first = score(tiny_model, tmp_path / "in", root, "r1", run_date="2026-01-01")
    second = score(tiny_model, tmp_path / "in", root, "r2", run_date="2026-01-02")
    run1 = root / "dt=2026-01-01" / "run=r1"
    assert sorted(p.name for p in run1.iterdir()) == [
        "_SUCCESS",
        "confusion",
        "errors",
        "manifest",
        "per_class",
        "predictions",
        "summary.json",
    ]
    assert json.loads((run1 / "_SUCCESS").read_text()) == json.loads((run1 / "summary.json").read_text())
    assert json.loads((run1 / "_SUCCESS").read_text())["counts"] == first["counts"]
    assert first["run_path"] == str(run1) and first["dt"] == "2026-01-01" and first["layout"] == "runs"
    assert first["model_id"] == second["model_id"] and len(first["model_id"]) == 64
    assert [(r.dt, r.run_id) for r in runs.committed_runs(str(root))] == [("2026-01-01", "r1"), ("2026-01-02", "r2")]
    # One table over every run, with dt/run columns from the Hive-style folders.
    table = runs.read_runs(str(root), "predictions")
    assert table.num_rows == 24
    assert sorted(set(zip(table.column("dt").to_pylist(), table.column("run").to_pylist(), strict=True))) == [
        ("2026-01-01", "r1"),
        ("2026-01-02", "r2"),
    ]
    assert table.column("run").to_pylist() == table.column("run_id").to_pylist()
    # Plain pyarrow.dataset on the same files reads the same partitions.
    files = sorted(str(p) for p in root.glob("dt=*/run=*/predictions/*.parquet"))
    plain = pads.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root)).to_table()
    assert plain.num_rows == 24 and {"dt", "run"} <= set(plain.column_names)
    # An uncommitted run (no _SUCCESS) is invisible to readers.
    (root / "dt=2026-01-02" / "run=r2" / "_SUCCESS").unlink()
    assert runs.read_runs(str(root), "predictions").num_rows == 12
    assert runs.read_success(str(root / "dt=2026-01-02" / "run=r2")) is None


def test_rerun_of_a_run_id_replaces_it_completely(tiny_model, sample_data, tmp_path):
    write_digits(sample_data, tmp_path / "in", range(10))
    root = tmp_path / "root"
    score(tiny_model, tmp_path / "in", root, "nightly", run_date="2026-01-01")
    old = root / "dt=2026-01-01" / "run=nightly"
    # Debris of a crashed attempt: a stale shard and a Beam temp folder.
    pq.write_table(pq.read_table(old / "predictions"), old / "predictions" / "part-99999-of-99999.parquet")
    (old / "predictions" / "beam-temp-part-123").mkdir()
    (old / "predictions" / "beam-temp-part-123" / "x").write_bytes(b"partial")
    # wait=False: the launcher returns once submitted, so the commit is the pipeline's own work.
    submitted = score(tiny_model, tmp_path / "in", root, "nightly", wait=False, run_date="2026-01-03")
    assert submitted["state"] == "submitted" and not old.exists()
    new = root / "dt=2026-01-03" / "run=nightly"
    summary = runs.read_success(str(new))
    assert summary["counts"]["scored"] == 10 and summary["exit_code"] == 0 and "wall_time_s" not in summary
    assert summary["files_written"] == 5  # one shard per table (4) and the manifest, all finalised before
    assert len(predicted_paths(new)) == 10
    assert runs.read_runs(str(root), "predictions").num_rows == 10
    assert not list(root.rglob("beam-temp*"))


def test_incremental_scores_only_new_and_changed_files(tiny_model, sample_data, tmp_path):
    inputs = tmp_path / "in"
    root = tmp_path / "root"
    first_paths = write_digits(sample_data, inputs, range(10))
    day1 = score(tiny_model, inputs, root, "d1", run_date="2026-02-01", incremental=True)
    assert day1["counts"]["scored"] == 10 and day1["incremental"]["known_files"] == 0
    new_paths = write_digits(sample_data, inputs, range(10, 15))
    day2 = score(tiny_model, inputs, root, "d2", run_date="2026-02-02", incremental=True)
    run2 = root / "dt=2026-02-02" / "run=d2"
    assert predicted_paths(run2) == sorted(new_paths)
    assert day2["counts"]["matched"] == 5 and day2["skipped_by_reason"][runs.SKIP_ALREADY_SCORED] == 10
    assert day2["incremental"] == {"enabled": True, "key": "stat", "known_files": 10, "skipped": 10}
    # Rerunning day 2 must not skip its own files: its earlier output is being replaced.
    again = score(tiny_model, inputs, root, "d2", run_date="2026-02-02", incremental=True)
    assert again["counts"]["scored"] == 5 and predicted_paths(run2) == sorted(new_paths)
    # A changed file is scored again; its neighbours are not.
    changed = pathlib.Path(first_paths[3])
    Image.fromarray(sample_data.split("test").images[500]).save(changed)
    os.utime(changed, (1_900_000_000, 1_900_000_000))
    day3 = score(tiny_model, inputs, root, "d3", run_date="2026-02-03", incremental=True)
    assert predicted_paths(root / "dt=2026-02-03" / "run=d3") == [str(changed)]
    # Nothing new: an empty, committed run that exits 0.
    day4 = score(tiny_model, inputs, root, "d4", run_date="2026-02-04", incremental=True)
    assert day4["counts"]["matched"] == 0 and day4["exit_code"] == 0 and day4["incremental"]["skipped"] == 15
    assert (root / "dt=2026-02-04" / "run=d4" / "_SUCCESS").exists()
    # Over all runs every file is scored once, except the changed one (twice: old and new content).
    table = runs.read_runs(str(root), "predictions").to_pydict()
    counts = {p: table["path"].count(p) for p in set(table["path"])}
    assert counts == {p: 2 if p == str(changed) else 1 for p in first_paths + new_paths}
    assert day3["counts"]["scored"] == 1


def test_incremental_hash_key_ignores_mtime_but_not_content(tiny_model, sample_data, tmp_path):
    inputs = tmp_path / "in"
    root = tmp_path / "root"
    paths = write_digits(sample_data, inputs, range(6))
    score(tiny_model, inputs, root, "h1", run_date="2026-03-01", incremental=True, incremental_key="hash")
    touched, rewritten = pathlib.Path(paths[0]), pathlib.Path(paths[1])
    os.utime(touched, (1_900_000_000, 1_900_000_000))  # same bytes, new mtime
    Image.fromarray(sample_data.split("test").images[700]).save(rewritten)
    h2 = score(tiny_model, inputs, root, "h2", run_date="2026-03-02", incremental=True, incremental_key="hash")
    assert predicted_paths(root / "dt=2026-03-02" / "run=h2") == [str(rewritten)]
    assert h2["incremental"]["skipped"] == 5
    manifest = pq.read_table(root / "dt=2026-03-02" / "run=h2" / "manifest").to_pydict()
    assert manifest["path"] == [str(rewritten)] and len(manifest["sha256"][0]) == 64
    # The stat key (manifests hold both keys) sees the touched file as changed, and only it.
    score(tiny_model, inputs, root, "s3", run_date="2026-03-03", incremental=True)
    assert predicted_paths(root / "dt=2026-03-03" / "run=s3") == [str(touched)]


def test_known_files_retries_transient_errors_and_ignores_uncommitted_runs(tmp_path):
    root = tmp_path / "root"

    def fake_run(run_id: str, rows: list[tuple[str, str | None]], committed: bool = True) -> None:
        run_dir = root / "dt=2026-04-01" / f"run={run_id}"
        for table in ("manifest", "errors"):
            (run_dir / table).mkdir(parents=True)
        paths = [p for p, _ in rows]
        manifest = {"path": paths, "size": [10] * len(paths), "mtime": [1.5] * len(paths)}
        manifest |= {"sha256": [None] * len(paths), "run_id": [run_id] * len(paths)}
        pq.write_table(pa.Table.from_pydict(manifest, schema=runs.MANIFEST_SCHEMA), run_dir / "manifest" / "p.parquet")
        errors = [(p, s) for p, s in rows if s]
        pq.write_table(
            pa.table({"path": [p for p, _ in errors], "stage": [s for _, s in errors]}),
            run_dir / "errors" / "p.parquet",
        )
        if committed:
            (run_dir / "_SUCCESS").write_text("{}")

    fake_run("a", [("/x/ok.png", None), ("/x/bad.png", "decode"), ("/x/io.png", "read"), ("/x/oom.png", "inference")])
    fake_run("b", [("/x/later.png", None)], committed=False)
    assert runs.known_files(str(root), "stat") == {("/x/ok.png", 10, 1.5), ("/x/bad.png", 10, 1.5)}
    assert runs.known_files(str(root), "stat", exclude_run_id="a") == frozenset()
    assert runs.known_files(str(tmp_path / "missing"), "stat") == frozenset()


def test_run_options_and_run_ids_are_validated():
    with pytest.raises(ValueError, match="run_date must be YYYY-MM-DD"):
        runs.RunOptions(run_date="2026-13-01")
    with pytest.raises(ValueError, match="incremental_key"):
        runs.RunOptions(incremental_key="mtime")
    with pytest.raises(ScoringError, match="--run-id"):
        runs.check_run_id("../escape")
    assert runs.check_run_id("manual__2026-01-01T00:00:00+00:00") == "manual__2026-01-01T00:00:00+00:00"
    assert runs.default_run_id().endswith("Z") and len(runs.default_run_id()) == 16


def test_cli_runs_layout_model_pin_and_flags(tiny_model, sample_data, tmp_path, capsys):
    write_digits(sample_data, tmp_path / "in", range(8))
    root = tmp_path / "root"
    model_id = json.loads(pathlib.Path(str(tiny_model).replace(".keras", ".card.json")).read_text())["model_id"]
    base = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(root)]
    code = cli_main([*base, "--layout", "runs", "--run-id", "c1", "--expect-model-id", "0" * 64])
    err = capsys.readouterr().err
    assert code == 2 and "--expect-model-id" in err and model_id in err and err.count("\n") == 1
    assert not root.exists()  # nothing run, nothing written
    code = cli_main([*base, "--incremental"])
    assert code == 2 and "need --layout runs" in capsys.readouterr().err
    code = cli_main([*base, "--layout", "runs", "--run-id", "bad/id"])
    assert code == 2 and "--run-id" in capsys.readouterr().err
    code = cli_main([*base, "--layout", "runs", "--run-id", "c1", "--run-date", "2026-05-01", "--incremental"])
    code |= cli_main([*base, "--layout", "runs", "--run-id", "c2", "--incremental", "--expect-model-id", model_id[:12]])
    out = capsys.readouterr().out
    assert code == 0 and "run c1 committed" in out and "8 files already scored" in out
    summary = json.loads((root / "dt=2026-05-01" / "run=c1" / "_SUCCESS").read_text())
    assert summary["model_id"] == model_id and summary["counts"]["scored"] == 8
    c2 = runs.committed_runs(str(root))[-1]
    assert c2.run_id == "c2" and runs.read_success(c2.path)["expect_model_id"] == model_id[:12]
    # Flat layout also honours the pin (refused before anything is written).
    flat = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "flat")]
    assert cli_main([*flat, "--expect-model-id", "f" * 16]) == 2 and not (tmp_path / "flat").exists()


def test_incremental_hash_key_reads_each_file_once(tiny_model, sample_data, tmp_path, monkeypatch):
    """The hash step's bytes are the ones decoded: one read per file, not one to hash and one to decode."""
    from apache_beam.io.filesystems import FileSystems

    from mnist_batch.scoring import dofns

    inputs = tmp_path / "in"
    paths = write_digits(sample_data, inputs, range(5))
    opened: list[str] = []
    original_local, original_beam = dofns.open_local, FileSystems.open

    def counting_local(path):
        opened.append(path)
        return original_local(path)

    def counting_beam(path, *args, **kwargs):
        if str(path).endswith(".png"):
            opened.append(path)
        return original_beam(path, *args, **kwargs)

    monkeypatch.setattr(dofns, "open_local", counting_local)
    monkeypatch.setattr(FileSystems, "open", staticmethod(counting_beam))
    summary = score(tiny_model, inputs, tmp_path / "root", "once", incremental=True, incremental_key="hash")
    assert summary["counts"]["scored"] == 5
    assert sorted(opened) == sorted(str(p) for p in paths)
