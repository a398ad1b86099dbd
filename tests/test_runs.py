"""The run store (``--layout runs``, layout v2): Hive-partitioned tables per table, commits through
staging, leases against concurrent launches, literal paths, and the incremental history read in the job.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch.config import ScoreConfig

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import claims, commit, fs, history, runs  # noqa: E402
from mnist_batch.runstore.errors import RunStoreError  # noqa: E402
from mnist_batch.runstore.layout import Layout  # noqa: E402
from mnist_batch.runstore.run_ids import check_run_id, default_run_id  # noqa: E402
from mnist_batch.scoring import incremental, launch  # noqa: E402
from mnist_batch.scoring.errors import ScoringError  # noqa: E402
from mnist_batch.tables import LAYOUT_FILE, RUN_TABLES  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
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


def score(model, inputs, root, run_id=None, wait=True, **options):
    config = ScoreConfig(model=str(model), inputs=(str(inputs),), output=str(root), run_id=run_id)
    return launch.launch(config, launch.RunOptions(layout="runs", **options), wait=wait)


def predicted_paths(root: pathlib.Path, dt: str, run_id: str) -> list[str]:
    return sorted(pq.read_table(root / "predictions" / f"dt={dt}" / f"run={run_id}").column("path").to_pylist())


def test_table_first_layout_commit_markers_and_one_table_over_runs(tiny_model, sample_data, tmp_path):
    write_digits(sample_data, tmp_path / "in", range(12))
    root = tmp_path / "root"
    first = score(tiny_model, tmp_path / "in", root, "r1", run_date="2026-01-01")
    second = score(tiny_model, tmp_path / "in", root, "r2", run_date="2026-01-02")
    assert sorted(p.name for p in root.iterdir()) == sorted([LAYOUT_FILE, "_runs", *RUN_TABLES])
    assert json.loads((root / LAYOUT_FILE).read_text())["layout_version"] == 2
    for table in RUN_TABLES:
        assert sorted(p.name for p in (root / table).iterdir()) == ["dt=2026-01-01", "dt=2026-01-02"]
        assert [p.suffix for p in (root / table / "dt=2026-01-01" / "run=r1").iterdir()] == [".parquet"]
    meta = root / "_runs" / "dt=2026-01-01" / "run=r1"
    assert sorted(p.name for p in meta.iterdir()) == ["_SUCCESS", "summary.json"]
    committed = json.loads((meta / "_SUCCESS").read_text())
    assert committed == json.loads((meta / "summary.json").read_text())
    assert committed["counts"] == first["counts"] and committed["attempt"] == first["attempt"]
    assert first["run_path"] == str(meta) and first["dt"] == "2026-01-01" and first["layout"] == "runs"
    assert first["model_id"] == second["model_id"] and len(first["model_id"]) == 64
    assert [(r.dt, r.run_id) for r in runs.committed_runs(str(root))] == [("2026-01-01", "r1"), ("2026-01-02", "r2")]
    table = runs.read_runs(str(root), "predictions")
    assert table.num_rows == 24
    assert table.schema.field("dt").type == pa.date32()  # a date, as DuckDB, Polars and the typed recipes read it
    assert sorted(set(zip(table.column("dt").to_pylist(), table.column("run").to_pylist(), strict=True))) == [
        (datetime.date(2026, 1, 1), "r1"),
        (datetime.date(2026, 1, 2), "r2"),
    ]
    assert table.column("run").to_pylist() == table.column("run_id").to_pylist()
    # An uncommitted run (its marker gone) is invisible to the package's reader.
    (root / "_runs" / "dt=2026-01-02" / "run=r2" / "_SUCCESS").unlink()
    assert runs.read_runs(str(root), "predictions").num_rows == 12


READER_RUN_IDS = ["nightly", "d20261122", "e5", "manual__2026-11-22T00.00.00", None]
"""Id forms the CLI accepts, the default (None) among them; none may become a number or a date."""


def test_every_parquet_reader_sees_exactly_the_committed_runs_with_string_run_ids(tiny_model, sample_data, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    pandas = pytest.importorskip("pandas")
    import pyarrow.dataset as pads

    write_digits(sample_data, tmp_path / "in", range(5))
    root = tmp_path / "root"
    ids = []
    for i, run_id in enumerate(READER_RUN_IDS):
        ids.append(score(tiny_model, tmp_path / "in", root, run_id, run_date=f"2026-11-2{i}")["run_id"])
    # Debris of a killed launch: shards in staging, never moved into a table.
    debris = root / "_staging" / "killed.0123" / "predictions"
    debris.mkdir(parents=True)
    pq.write_table(pq.read_table(root / "predictions"), debris / "part-x.parquet")
    expected = {(r, 5) for r in ids}
    table_dir = str(root / "predictions")

    arrow = pads.dataset(table_dir, partitioning="hive").to_table()
    assert arrow.schema.field("run").type == pa.string() and arrow.schema.field("dt").type == pa.string()
    assert {(r, arrow.column("run").to_pylist().count(r)) for r in set(arrow.column("run").to_pylist())} == expected

    frame = pandas.read_parquet(table_dir)
    assert frame["run"].dtype.name == "category" and all(isinstance(v, str) for v in frame["run"].cat.categories)
    assert set(frame.groupby("run", observed=True).size().items()) == expected

    rows = duckdb.sql(
        f"SELECT run, typeof(run), typeof(dt), count(*) FROM read_parquet('{table_dir}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    assert {(r, n) for r, _, _, n in rows} == expected and {(t, d) for _, t, d, _ in rows} == {("VARCHAR", "DATE")}

    lazy = polars.scan_parquet(table_dir, hive_partitioning=True).collect()
    assert lazy.schema["run"] == polars.String and lazy.schema["dt"] == polars.Date
    assert set(lazy.group_by("run").len().iter_rows()) == expected

    errors = pandas.read_parquet(str(root / "errors"))  # a table with no rows still reads, with its columns
    assert len(errors) == 0 and {"path", "stage", "run"} <= set(errors.columns)


def test_run_ids_are_unique_by_default_and_validated():
    ids = {default_run_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(check_run_id(i) == i for i in ids)
    for bad in ("20261122", "2026-11-22", "../escape", "a/b", "x:y", "true", "NaN", "Infinity", "null", "", "-x"):
        with pytest.raises(RunStoreError, match="--run-id"):
            check_run_id(bad)
    assert check_run_id("manual__2026-11-22T00.00.00") == "manual__2026-11-22T00.00.00"
    with pytest.raises(ValueError, match="run_date must be YYYY-MM-DD"):
        launch.RunOptions(layout="runs", run_date="2026-13-01")
    with pytest.raises(ValueError, match="incremental_key"):
        launch.RunOptions(layout="runs", incremental_key="mtime")
    with pytest.raises(ValueError, match="incremental needs layout 'runs'"):
        launch.RunOptions(incremental=True)


def test_a_committed_run_id_is_replaced_only_with_replace(tiny_model, sample_data, tmp_path):
    write_digits(sample_data, tmp_path / "in", range(10))
    root = tmp_path / "root"
    score(tiny_model, tmp_path / "in", root, "nightly", run_date="2026-01-01")
    with pytest.raises(ScoringError, match="already committed .*pass --replace"):
        score(tiny_model, tmp_path / "in", root, "nightly", run_date="2026-01-01")
    # Replaced under another day: the run moves to dt=2026-01-09 (every dt=2026-01-01 partition goes).
    score(tiny_model, tmp_path / "in", root, "nightly", run_date="2026-01-09", replace=True)
    assert [r.dt for r in runs.committed_runs(str(root))] == ["2026-01-09"]
    # wait=False: the launcher returns once submitted, so the commit is the job's own work.
    submitted = score(tiny_model, tmp_path / "in", root, "nightly", wait=False, run_date="2026-01-03", replace=True)
    assert submitted["state"] == "submitted"
    assert runs.committed_runs(str(root)) == [runs.RunInfo("2026-01-03", "nightly", str(root))]
    summary = json.loads((root / "_runs" / "dt=2026-01-03" / "run=nightly" / "_SUCCESS").read_text())
    assert summary["counts"]["scored"] == 10 and summary["exit_code"] == 0 and summary["wall_time_s"] > 0
    for table in RUN_TABLES:
        assert sorted(p.name for p in (root / table).iterdir()) == ["dt=2026-01-03"], table
    assert not (root / "_runs" / "dt=2026-01-01").exists() or not any((root / "_runs" / "dt=2026-01-01").iterdir())
    assert len(predicted_paths(root, "2026-01-03", "nightly")) == 10
    assert runs.read_runs(str(root), "predictions").num_rows == 10
    assert not (root / "_staging").exists() or not any((root / "_staging").iterdir())
    assert not list((root / "_claims").glob("*.json")) if (root / "_claims").exists() else True


def test_incremental_scores_only_new_and_changed_files(tiny_model, sample_data, tmp_path):
    inputs = tmp_path / "in"
    root = tmp_path / "root"
    first_paths = write_digits(sample_data, inputs, range(10))
    day1 = score(tiny_model, inputs, root, "d1", run_date="2026-02-01", incremental=True)
    assert day1["counts"]["scored"] == 10 and day1["incremental"]["earlier_runs"] == 0
    new_paths = write_digits(sample_data, inputs, range(10, 15))
    day2 = score(tiny_model, inputs, root, "d2", run_date="2026-02-02", incremental=True)
    assert predicted_paths(root, "2026-02-02", "d2") == sorted(new_paths)
    assert day2["counts"]["matched"] == 5 and day2["skipped_by_reason"][history.SKIP_ALREADY_SCORED] == 10
    assert day2["incremental"] == {"enabled": True, "key": "stat", "earlier_runs": 1, "skipped": 10}
    # Replacing day 2 must not skip its own files: its earlier output is being replaced.
    again = score(tiny_model, inputs, root, "d2", run_date="2026-02-02", incremental=True, replace=True)
    assert again["counts"]["scored"] == 5 and predicted_paths(root, "2026-02-02", "d2") == sorted(new_paths)
    # A changed file is scored again; its neighbours are not.
    changed = pathlib.Path(first_paths[3])
    Image.fromarray(sample_data.split("test").images[500]).save(changed)
    os.utime(changed, (1_900_000_000, 1_900_000_000))
    day3 = score(tiny_model, inputs, root, "d3", run_date="2026-02-03", incremental=True)
    assert predicted_paths(root, "2026-02-03", "d3") == [str(changed)]
    # Nothing new: an empty, committed run that exits 0.
    day4 = score(tiny_model, inputs, root, "d4", run_date="2026-02-04", incremental=True)
    assert day4["counts"]["matched"] == 0 and day4["exit_code"] == 0 and day4["incremental"]["skipped"] == 15
    assert (root / "_runs" / "dt=2026-02-04" / "run=d4" / "_SUCCESS").exists()
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
    assert predicted_paths(root, "2026-03-02", "h2") == [str(rewritten)]
    assert h2["incremental"]["skipped"] == 5
    manifest = pq.read_table(root / "manifest" / "dt=2026-03-02" / "run=h2").to_pydict()
    assert manifest["path"] == [str(rewritten)] and len(manifest["sha256"][0]) == 64
    # The stat key (manifests hold both keys) sees the touched file as changed, and only it.
    score(tiny_model, inputs, root, "s3", run_date="2026-03-03", incremental=True)
    assert predicted_paths(root, "2026-03-03", "s3") == [str(touched)]


def fake_run(root: pathlib.Path, run_id: str, rows: list[tuple[str, str | None]], committed: bool = True) -> None:
    """A run folder with a manifest and errors, written by hand (its manifest as runs wrote it before
    the ``version`` column: old run stores stay readable)."""
    for table in ("manifest", "errors"):
        (root / table / "dt=2026-04-01" / f"run={run_id}").mkdir(parents=True)
    paths = [p for p, _ in rows]
    manifest = {"path": paths, "size": [10] * len(paths), "mtime": [1.5] * len(paths)}
    manifest |= {"sha256": [None] * len(paths), "run_id": [run_id] * len(paths), "model_id": ["m"] * len(paths)}
    part = root / "manifest" / "dt=2026-04-01" / f"run={run_id}" / "p.parquet"
    old_schema = pa.schema([f for f in RUN_TABLES["manifest"] if f.name != "version"])
    pq.write_table(pa.Table.from_pydict(manifest, schema=old_schema), part)
    errors = [(p, s) for p, s in rows if s]
    pq.write_table(
        pa.table({"path": [p for p, _ in errors], "stage": [s for _, s in errors]}),
        root / "errors" / "dt=2026-04-01" / f"run={run_id}" / "p.parquet",
    )
    meta = root / "_runs" / "dt=2026-04-01" / f"run={run_id}"
    meta.mkdir(parents=True)
    if committed:
        (meta / "_SUCCESS").write_text("{}")


def test_known_files_retry_transient_errors_and_ignore_uncommitted_runs(tmp_path):
    root = tmp_path / "root"
    fake_run(
        root, "a", [("/x/ok.png", None), ("/x/bad.png", "decode"), ("/x/io.png", "read"), ("/x/oom.png", "inference")]
    )
    fake_run(root, "b", [("/x/later.png", None)], committed=False)
    assert [r.run_id for r in history.committed_runs(str(root))] == ["a"]
    blob = history.known_digests(history.committed_runs(str(root))[0], "stat")
    digests = {blob[i : i + 16] for i in range(0, len(blob), 16)}
    assert digests == {history.key_digest("stat", p, 10, 1.5) for p in ("/x/ok.png", "/x/bad.png")}
    assert history.committed_runs(str(tmp_path / "missing")) == []


def test_glob_characters_in_inputs_roots_and_model_are_literal(tiny_model, sample_data, tmp_path):
    """``batch[1]`` is not ``batch1``, ``prod?`` is not ``prod1``, in inputs, roots and the model path."""
    base = tmp_path / "we ird{a,b}*"
    literal = write_digits(sample_data, base / "batch[1]", range(4))
    write_digits(sample_data, base / "batch1", range(4, 10))
    model_dir = base / "models [v2]?"
    model_dir.mkdir()
    for f in pathlib.Path(tiny_model).parent.iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    model = model_dir / pathlib.Path(tiny_model).name
    roots = base / "roots"

    def score_into(root: pathlib.Path, inputs: pathlib.Path, dt: str, *extra: str) -> int:
        argv = ["score", "--model", str(model), "--input", str(inputs), "--output", str(root), "--layout", "runs"]
        return cli_main([*argv, "--run-id", "nightly", "--run-date", dt, *extra])

    assert score_into(roots / "prod1", base / "batch[1]", "2026-05-01") == 0
    assert score_into(roots / "prod?", base / "batch[1]", "2026-05-01") == 0
    got = predicted_paths(roots / "prod?", "2026-05-01", "nightly")
    assert got == sorted(literal)  # not batch1's six files
    # Nothing outside batch[1] was even looked at: no skipped rows for the sibling root prod1.
    summary = json.loads((roots / "prod?" / "_runs" / "dt=2026-05-01" / "run=nightly" / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 0, summary["skipped_by_reason"]
    # Replacing prod?'s run leaves prod1's run of the same id alone.
    assert score_into(roots / "prod?", base / "batch1", "2026-05-02", "--replace") == 0
    assert len(predicted_paths(roots / "prod1", "2026-05-01", "nightly")) == 4
    assert [r.dt for r in runs.committed_runs(str(roots / "prod1"))] == ["2026-05-01"]
    assert [r.dt for r in runs.committed_runs(str(roots / "prod?"))] == ["2026-05-02"]
    # The incremental history of prod? is prod?'s own: batch[1]'s files were never scored there now.
    summary = score(model, base / "batch[1]", roots / "prod?", "inc", run_date="2026-05-03", incremental=True)
    assert summary["counts"]["scored"] == 4 and summary["incremental"]["skipped"] == 0
    # A flat output with glob characters (Beam's own Parquet sink fails there).
    flat = base / "flat [x]*"
    assert cli_main(["score", "--model", str(model), "--input", str(base / "batch[1]"), "--output", str(flat)]) == 0
    assert pq.read_table(flat / "predictions").num_rows == 4


def test_a_live_run_id_or_incremental_history_is_refused_and_a_stale_lease_is_taken_over(
    tiny_model, sample_data, tmp_path, capsys
):
    write_digits(sample_data, tmp_path / "in", range(3))
    root = tmp_path / "root"
    base = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(root)]
    base += ["--layout", "runs"]
    score(tiny_model, tmp_path / "in", root, "first")
    held = claims.claim(str(root), "run=busy", run_id="busy", attempt="busy.1")  # a live launch (this process)
    assert cli_main([*base, "--run-id", "busy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run busy under" in err and f"pid {os.getpid()}" in err
    inc = claims.claim(str(root), "incremental", run_id="other", attempt="other.1")
    assert cli_main([*base, "--run-id", "later", "--incremental"]) == 2
    assert "incremental history" in capsys.readouterr().err
    held.release()
    inc.release()
    # A lease left by a launcher that died (same host, no such process) is stale: taken over.
    uri = claims.lease_uri(str(root), "run=busy")
    dead = {"name": "run=busy", "attempt": "busy.dead", "host": socket.gethostname(), "pid": 2**22 + 12345}
    dead |= {"heartbeat_at": 0, "ttl_s": 120, "detached": False, "run_id": "busy"}
    pathlib.Path(uri).write_text(json.dumps(dead))
    stale_staging = root / "_staging" / "busy.dead" / "predictions"
    stale_staging.mkdir(parents=True)
    (stale_staging / "part-x.parquet").write_bytes(b"partial")
    assert cli_main([*base, "--run-id", "busy"]) == 0
    assert not (root / "_staging" / "busy.dead").exists()  # the dead launch's staging was cleaned
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["busy", "first"]


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_a_flat_output_a_live_launch_scores_into_is_refused_whatever_the_run_id(
    tiny_model, sample_data, tmp_path, capsys, engine
):
    """A flat output holds one run: a second launch while one is live exits 2 at once, naming the
    first, and writes nothing; once that launch is gone the output is free again."""
    write_digits(sample_data, tmp_path / "in", range(3))
    out = tmp_path / "flat"
    base = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(out)]
    base += ["--engine", engine, "-q"]
    held = claims.claim(str(out), "output", run_id="first", attempt="first.1")  # a live launch (this process)
    assert cli_main([*base, "--run-id", "second"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the output {out} is held by attempt first.1" in err, err
    assert f"pid {os.getpid()}" in err, err
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["output.json"]  # only the first's lease
    held.release()
    assert cli_main([*base, "--run-id", "second"]) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["scored"] == 3
    assert not list(out.glob("_claims/*"))  # its leases released


def test_a_commit_cut_short_is_completed_by_the_next_launch(tiny_model, sample_data, tmp_path, monkeypatch):
    write_digits(sample_data, tmp_path / "in", range(8))
    root = tmp_path / "root"
    real_rename = fs.rename
    moved = []

    def crash_after_two(src, dst):
        if len(moved) == 2:
            raise KeyboardInterrupt("killed mid-commit")
        moved.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(fs, "rename", crash_after_two)
    with pytest.raises(BaseException, match="killed mid-commit"):
        score(tiny_model, tmp_path / "in", root, "cut")
    monkeypatch.setattr(fs, "rename", real_rename)
    assert runs.committed_runs(str(root)) == []
    (journal,) = root.glob("_runs/dt=*/run=cut/_COMMITTING")
    cleaned = runs.clean(str(root))
    assert cleaned["completed"] == [str(journal)]
    (run,) = runs.committed_runs(str(root))
    assert run.run_id == "cut" and runs.read_runs(str(root), "predictions").num_rows == 8
    for table in RUN_TABLES:
        assert any(pathlib.Path(run.table_dir(table)).glob("*.parquet")), table
    assert not any((root / "_staging").iterdir())


def test_cli_runs_layout_flags_and_runs_command(tiny_model, sample_data, tmp_path, capsys):
    write_digits(sample_data, tmp_path / "in", range(8))
    root = tmp_path / "root"
    model_id = json.loads(pathlib.Path(str(tiny_model).replace(".keras", ".card.json")).read_text())["model_id"]
    base = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(root)]
    code = cli_main([*base, "--layout", "runs", "--run-id", "c1", "--expect-model-id", "0" * 64])
    err = capsys.readouterr().err
    assert code == 2 and "--expect-model-id" in err and model_id in err and err.count("\n") == 1
    assert not root.exists()  # nothing run, nothing written
    assert cli_main([*base, "--incremental"]) == 2 and "need --layout runs" in capsys.readouterr().err
    assert cli_main([*base, "--layout", "runs", "--overwrite"]) == 2 and "--replace" in capsys.readouterr().err
    assert cli_main([*base, "--layout", "runs", "--run-id", "20261122"]) == 2
    assert "start with a letter" in capsys.readouterr().err
    code = cli_main([*base, "--layout", "runs", "--run-id", "c1", "--run-date", "2026-05-01", "--incremental"])
    code |= cli_main([*base, "--layout", "runs", "--run-id", "c2", "--incremental", "--expect-model-id", model_id[:12]])
    out = capsys.readouterr().out
    assert code == 0 and "run c1 committed" in out and "8 files already scored" in out
    summary = json.loads((root / "_runs" / "dt=2026-05-01" / "run=c1" / "_SUCCESS").read_text())
    assert summary["model_id"] == model_id and summary["counts"]["scored"] == 8
    assert cli_main(["runs", "list", str(root)]) == 0
    listing = capsys.readouterr().out
    assert "c1" in listing and "c2" in listing and "2 committed run(s)" in listing
    # Listed in commit order: a backfill of an older dt, committed last, is listed last.
    assert cli_main([*base, "--layout", "runs", "--run-id", "back", "--run-date", "2026-01-01"]) == 0
    capsys.readouterr()
    assert cli_main(["runs", "list", str(root), "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["c1", "c2", "back"]
    shutil.rmtree(root / "_runs" / "dt=2026-01-01")
    for table in root.glob("*/dt=2026-01-01"):
        shutil.rmtree(table)
    assert cli_main(["runs", "list", str(root)]) == 0
    listing = capsys.readouterr().out
    # Each run's path, as `report` takes it; one damaged summary is a row, not the end of the listing.
    assert str(root / "_runs" / "dt=2026-05-01" / "run=c1") in listing
    (root / "_runs" / "dt=2026-05-01" / "run=c1" / "summary.json").write_text("{")
    assert cli_main(["runs", "list", str(root)]) == 0 and "unreadable" in capsys.readouterr().out
    (root / "_runs" / "dt=2026-05-01" / "run=c1" / "summary.json").write_text(json.dumps(summary))
    assert cli_main(["runs", "clean", str(root)]) == 0 and "completed 0" in capsys.readouterr().out
    assert cli_main(["runs", "list", str(tmp_path / "in")]) == 2
    # A flat output is not a runs root, and a runs root is not a flat output.
    assert cli_main([*base]) == 2 and "is a runs root" in capsys.readouterr().err
    flat = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "flat")]
    assert cli_main([*flat, "--expect-model-id", "f" * 16]) == 2 and not (tmp_path / "flat").exists()
    assert cli_main(flat) == 0
    assert cli_main([*flat[:-1], str(tmp_path / "flat"), "--layout", "runs"]) == 2
    assert "flat run's outputs" in capsys.readouterr().err


def test_incremental_hash_key_reads_each_file_once(tiny_model, sample_data, tmp_path, monkeypatch):
    """The hash step's bytes are the ones decoded: one read per file, not one to hash and one to decode."""
    from apache_beam.io.filesystems import FileSystems

    from mnist_batch import files

    inputs = tmp_path / "in"
    paths = write_digits(sample_data, inputs, range(5))
    opened: list[str] = []
    original_local, original_beam = files.open_local, FileSystems.open

    def counting_local(path):
        if str(path).endswith(".png"):  # the model files are read through it too
            opened.append(path)
        return original_local(path)

    def counting_beam(path, *args, **kwargs):
        if str(path).endswith(".png"):
            opened.append(path)
        return original_beam(path, *args, **kwargs)

    monkeypatch.setattr(files, "open_local", counting_local)
    monkeypatch.setattr(FileSystems, "open", staticmethod(counting_beam))
    summary = score(tiny_model, inputs, tmp_path / "root", "once", incremental=True, incremental_key="hash")
    assert summary["counts"]["scored"] == 5
    assert sorted(opened) == sorted(str(p) for p in paths)


def test_a_failed_job_commits_nothing_and_says_so_in_one_line(tiny_model, sample_data, tmp_path, monkeypatch, capsys):
    write_digits(sample_data, tmp_path / "in", range(6))
    root = tmp_path / "root"
    base = ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(root)]
    assert cli_main([*base, "--layout", "runs", "--run-id", "good"]) == 0
    capsys.readouterr()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs, "write_atomic", disk_full)
    assert cli_main([*base, "--layout", "runs", "--run-id", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run bad failed, nothing committed" in err and "No space left" in err
    monkeypatch.undo()
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["good"]
    assert not (root / "_staging").exists() or not any((root / "_staging").iterdir())
    assert not any((root / "_claims").glob("*.json")) if (root / "_claims").exists() else True
    # The same failure in the flat layout leaves the earlier outputs as they were.
    flat = tmp_path / "flat"
    assert cli_main([*base[:-1], str(flat)]) == 0
    before = sorted((p.name, p.stat().st_size) for p in flat.rglob("*") if p.is_file())
    monkeypatch.setattr(fs, "write_atomic", disk_full)
    assert cli_main([*base[:-1], str(flat), "--overwrite"]) == 2
    monkeypatch.undo()
    assert sorted((p.name, p.stat().st_size) for p in flat.rglob("*") if p.is_file()) == before


def test_commit_moves_only_the_emitted_shards(tmp_path):
    """A shard of a failed bundle attempt (written, never emitted) is deleted, not committed."""
    from mnist_batch.runstore.shards import ShardWriter
    from mnist_batch.tables import TABLES

    layout = Layout("flat", str(tmp_path / "out"), "r1")
    staging = layout.staging_dir("r1.a")
    rows = pa.Table.from_pylist(
        [{"path": "x.png", "stage": "decode", "error_type": "E", "message": "m", "run_id": "r1", "model_id": "m"}],
        schema=TABLES["errors"],
    )
    emitted, orphan = (ShardWriter(f"{staging}/errors/part-{n}.parquet", TABLES["errors"]) for n in ("ok", "orphan"))
    for writer in (emitted, orphan):
        writer.write(rows)
        writer.close()
    commit.commit_run(layout, "r1.a", {"errors": [emitted.path]}, {"counts": {}}, replace=False)
    assert [p.name for p in (tmp_path / "out" / "errors").iterdir()] == ["part-ok.parquet"]
    for table in ("predictions", "confusion", "per_class"):  # no rows: one empty shard with the schema
        assert pq.read_table(tmp_path / "out" / table).schema.equals(TABLES[table], check_metadata=False)
    assert not (tmp_path / "out" / "_staging" / "r1.a").exists()
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["attempt"] == "r1.a"
    # A retried commit step of the same attempt is a no-op; another attempt needs replace.
    commit.commit_run(layout, "r1.a", {}, {}, replace=False)
    with pytest.raises(commit.CommitError, match="already committed"):
        commit.commit_run(layout, "r1.b", {}, {}, replace=False)
    # Another launch's run id into the same flat output: the run that is there, and the flat flag.
    other = Layout("flat", str(tmp_path / "out"), "r2")
    with pytest.raises(
        commit.CommitError, match=r"run r1 is already committed into this output, before run r2 \(pass --overwrite\)"
    ):
        commit.commit_run(other, "r2.a", {}, {}, replace=False)


def test_commit_verify_and_clean_ignore_the_workers_progress_files(tmp_path):
    """<staging>/_progress/ is no table: never moved into one, deleted with the staging, and a late
    write of a dead attempt (its staging gone) is deleted by ``runs clean`` as any dead staging is."""
    from mnist_batch.runstore import verify
    from mnist_batch.runstore.shards import ShardWriter
    from mnist_batch.scoring.progress import ProgressFile, progress_dir

    root = tmp_path / "root"
    layout = Layout("runs", str(root), "r1", "2026-01-02")
    staging = layout.staging_dir("r1.a")
    rows = pa.Table.from_pylist(
        [{"path": "x.png", "stage": "decode", "error_type": "E", "message": "m", "run_id": "r1", "model_id": "m"}],
        schema=RUN_TABLES["errors"],
    )
    shard = ShardWriter(f"{staging}/errors/part-ok.parquet", RUN_TABLES["errors"])
    shard.write(rows)
    shard.close()
    worker = ProgressFile(progress_dir(staging), every_s=0)
    worker.add(1)
    (root / "_staging" / "r1.a" / "_progress" / "garbled.json").write_text("{")
    summary = {"counts": {"scored": 0, "errors": 1}}
    commit.commit_run(layout, "r1.a", {"errors": [shard.path]}, summary, replace=False)
    committed = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert [p for p in committed if "_progress" in p or p.endswith(".json")] == [
        "_runs/dt=2026-01-02/run=r1/summary.json"
    ]
    assert not (root / "_staging" / "r1.a").exists()
    problems = verify.verify_run(next(r for r in history.committed_runs(str(root)) if r.run_id == "r1"))
    assert not [p for p in problems if "_progress" in p.path], problems
    # A worker of that attempt still running after the commit (a zombie task) writes once more.
    worker.add(1)
    assert (root / "_staging" / "r1.a" / "_progress").is_dir()
    assert runs.clean(str(root))["deleted"] == [staging]
    assert not (root / "_staging" / "r1.a").exists()


def test_only_a_job_on_a_cluster_that_the_launcher_waits_for_gets_progress_files():
    """Local runners keep their workers' own line (no files, no second line); a detached launch has no reader."""
    import contextlib
    from types import SimpleNamespace

    assert not launch.progress_from_workers(SimpleNamespace(wait=True, runner="DirectRunner"))
    assert not launch.progress_from_workers(SimpleNamespace(wait=False, runner="PortableRunner"))
    assert launch.progress_from_workers(SimpleNamespace(wait=True, runner="PortableRunner"))
    local = launch.launcher_progress(SimpleNamespace(wait=True, runner="DirectRunner"))
    assert isinstance(local, contextlib.nullcontext)


def test_the_job_graph_does_not_grow_with_the_incremental_history(tiny_model, sample_data, tmp_path):
    """The history is read inside the job: 1 or 20,000 earlier keys give the same serialised graph."""
    import apache_beam as beam

    from mnist_batch.scoring.pipeline import build_pipeline

    write_digits(sample_data, tmp_path / "in", range(3))
    sizes = {}
    for folder, keys in (("a", 1), ("b", 20_000)):
        root = tmp_path / folder / "root"  # paths of the same length and shape in both graphs
        fake_run(root, "old", [(f"gs://b/scans/{i:08d}.png", None) for i in range(keys)])
        earlier = [(r.dt, r.run_id) for r in history.committed_runs(str(root))]
        config = ScoreConfig(model=str(tiny_model), inputs=(str(tmp_path / "in"),), output=str(root), run_id="new")
        p = beam.Pipeline()
        build_pipeline(p, config, select_files=incremental.SelectFiles(str(root), "new", "stat", earlier))
        sizes[keys] = len(p.to_runner_api().SerializeToString())
    # Equal but for zlib's compression of the pickled steps (64 bytes apart on Beam 2.70, a few on
    # 2.77); 20,000 keys held in the graph would add hundreds of kilobytes.
    assert abs(sizes[1] - sizes[20_000]) < 1024 and sizes[20_000] < 1_000_000


def test_report_one_run_of_a_store_and_a_pointer_from_the_root(tiny_model, sample_data, tmp_path, capsys):
    write_digits(sample_data, tmp_path / "in", range(20))
    root = tmp_path / "root"
    score(tiny_model, tmp_path / "in", root, "n1", run_date="2026-08-01")
    meta = root / "_runs" / "dt=2026-08-01" / "run=n1"
    assert cli_main(["report", str(meta), "--dest", str(tmp_path / "page")]) == 0
    page = (tmp_path / "page" / "report.html").read_text(encoding="utf-8")
    assert "n1" in page and (tmp_path / "page" / "confusion.png").is_file()
    capsys.readouterr()
    assert cli_main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "a run store" in err and str(meta) in err and "mnist-batch monitor" in err


def test_a_commit_needs_the_launch_to_still_hold_its_lease(tmp_path):
    """The job's commit step checks ``held_by``: false once the launcher is dead, the lease is
    taken over, or released (a SIGKILLed launcher's job on a cluster then commits nothing)."""
    import subprocess
    import sys

    lease = claims.claim(str(tmp_path), "run=x", run_id="x", attempt="x.1")
    try:
        assert claims.held_by(lease.uri, "x.1")
        assert not claims.held_by(lease.uri, "x.2")  # another attempt's commit
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        owner = dict(lease.owner, pid=int(dead.stdout))
        lease._stop.set()  # no heartbeat rewriting the owner below
        from mnist_batch.runstore import fs

        fs.write_atomic(lease.uri, json.dumps(owner))
        assert not claims.held_by(lease.uri, "x.1")  # its launcher's process is gone
    finally:
        lease.release()
    assert not claims.held_by(lease.uri, "x.1")  # released


def test_every_table_joins_the_runs_table_in_every_reader(tiny_model, sample_data, tmp_path, monkeypatch):
    """One meaning per column: each table's rows meet their run's row on (dt, run, run_id, model_id), in
    pyarrow, pandas, DuckDB and Polars read as deploy/README.md's recipes read them (dt typed a date in
    every reader, run a string), every row; the runs table is typed and ordered by commit time."""
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    pandas = pytest.importorskip("pandas")
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from mnist_batch.tables import ID_COLUMNS, PARTITION_SCHEMA, PIPELINE_TABLES, RUNS_SCHEMA, RUNS_TABLE

    write_digits(sample_data, tmp_path / "in", range(6))
    (tmp_path / "in" / "7").mkdir(exist_ok=True)
    (tmp_path / "in" / "7" / "broken.png").write_bytes(b"not a png")  # one errors row per run
    root = tmp_path / "root"
    # Committed in this order; as text the ids sort otherwise (r2026 < rep < zz-nightly).
    for run_id, dt in (("zz-nightly", "2026-11-20"), ("r2026", "2026-11-20"), ("rep", "2026-11-21")):
        score(tiny_model, tmp_path / "in", root, run_id, run_date=dt)
    # The recipes' typing (deploy/README.md, "Reading the tables"): the same in every reader.
    parts = pads.partitioning(pa.schema([("dt", pa.date32()), ("run", pa.string())]), flavor="hive")
    assert parts.schema.equals(PARTITION_SCHEMA)
    hive_types = "hive_partitioning = true, hive_types = {'dt': DATE, 'run': VARCHAR}"
    hive_schema = {"dt": polars.Date, "run": polars.String}
    runs_dir = str(root / RUNS_TABLE)
    arrow_runs = pads.dataset(runs_dir, partitioning=parts).to_table()
    assert arrow_runs.num_rows == 3 and arrow_runs.select(RUNS_SCHEMA.names).schema.equals(RUNS_SCHEMA)
    assert arrow_runs.select(["dt", "run"]).schema.equals(PARTITION_SCHEMA)
    order = arrow_runs.sort_by("committed_at").column("run_id").to_pylist()
    assert order == ["zz-nightly", "r2026", "rep"] and sorted(order) != order
    assert arrow_runs.column("committed_at").type == pa.timestamp("us", tz="UTC")
    row = arrow_runs.filter(pc.equal(arrow_runs["run_id"], "rep")).to_pylist()[0]
    assert row["matched"] == 7 and row["scored"] == 6 and row["errors"] == 1 and row["labelled"] == 6
    assert 0 <= row["accuracy"] <= 1 and row["runtime"] == "keras" and row["runtime_model_id"] == row["model_id"]
    assert row["dt"] == datetime.date(2026, 11, 21)
    runs_frame = pandas.read_parquet(runs_dir, partitioning=parts)
    keys = ["dt", "run", *ID_COLUMNS]
    for table in PIPELINE_TABLES:
        table_dir = str(root / table)
        rows = pads.dataset(table_dir, partitioning=parts).to_table()
        assert rows.num_rows > 0 and set(ID_COLUMNS) <= set(rows.column_names), table
        assert rows.select(["dt", "run"]).schema.equals(PARTITION_SCHEMA), table
        flat = rows.select([c for c in rows.column_names if not pa.types.is_list(rows.schema.field(c).type)])
        assert flat.join(arrow_runs.select([*keys, "committed_at"]), keys).num_rows == rows.num_rows, table
        frame = pandas.read_parquet(table_dir, partitioning=parts)
        for f in (frame, runs_frame):  # dt: datetime.date in both (no astype), run: a string
            assert {type(v) for v in f["dt"]} == {datetime.date} and {type(v) for v in f["run"]} == {str}, table
        assert len(frame.merge(runs_frame[[*keys, "committed_at"]], on=keys)) == len(frame), table
        ((count, dt_type, run_type),) = duckdb.sql(
            f"SELECT count(*), any_value(typeof(t.dt)), any_value(typeof(t.run)) FROM read_parquet("
            f"'{table_dir}/**/*.parquet', {hive_types}) t JOIN read_parquet('{runs_dir}/**/*.parquet', {hive_types}) r "
            f"USING (dt, run, run_id, model_id)"
        ).fetchall()
        assert (count, dt_type, run_type) == (rows.num_rows, "DATE", "VARCHAR"), table
        joined = polars.scan_parquet(table_dir, hive_partitioning=True, hive_schema=hive_schema).join(
            polars.scan_parquet(runs_dir, hive_partitioning=True, hive_schema=hive_schema).select(
                [*keys, "committed_at"]
            ),
            on=keys,
        )
        frame_pl = joined.collect()
        assert frame_pl.height == rows.num_rows and frame_pl.schema["dt"] == polars.Date, table
        assert frame_pl.schema["run"] == polars.String, table
    package = runs.read_runs(str(root), "predictions")  # the package's reader types dt alike
    assert package.select(["dt", "run"]).schema.equals(PARTITION_SCHEMA) and package.num_rows == 18
    assert runs.read_runs(str(root), RUNS_TABLE).num_rows == 3
    # deploy/README.md's recipes, run as written (Spark aside: make test-spark) from a folder holding out/runs.
    python, sql = reader_recipes()
    (tmp_path / "cwd" / "out").mkdir(parents=True)
    (tmp_path / "cwd" / "out" / "runs").symlink_to(root)
    monkeypatch.chdir(tmp_path / "cwd")
    names: dict = {}
    exec(compile(python, "deploy/README.md", "exec"), names)  # the document's own code
    assert names["joined"].num_rows == names["table"].num_rows == 18 and names["df"].height == 18
    assert names["table"].schema.field("dt").type == pa.date32() and names["df"].schema["dt"] == polars.Date
    assert names["df"]["committed_at"].null_count() == 0  # Polars: every prediction met its run's row
    assert len(names["latest"]) == 6 and set(names["latest"]["run"]) == {"rep"}  # latest per path: by commit time
    latest = duckdb.sql(sql).fetchall()
    assert len(latest) == 6 and {row[-1] for row in latest} == {"rep"}  # p.*: the partitions come last


def reader_recipes() -> tuple[str, str]:
    """deploy/README.md's Python reader recipes (without Spark's lines) and its latest-row-per-path SQL."""
    text = (REPO / "deploy" / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Reading the tables") :]
    python = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python\n") + 10)]
    spark = python.index("from pyspark")
    python = python[:spark] + python[python.index("from mnist_batch", spark) :]
    sql = section[section.index("```sql\n") + 7 :]
    return python, sql[: sql.index("```")]
