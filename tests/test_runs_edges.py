"""The run store at its edges, against the real CLI: a launcher that lost its lease commits nothing
(fencing), an aborted commit never wedges a root, a replace is old-or-new for readers, shards are
verified, every file name is scored.

"Another host" is emulated as the issue reproduced it: the launcher is SIGSTOPped, its lease's
``host`` rewritten and its heartbeat aged, so ``runs clean`` and other launches take it as stale.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pyarrow.dataset as pads
import pytest

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import fs, runs  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
write_inputs = scoring_fixtures.write_train_digits
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
RUN_DATE = "2026-06-01"


def score_argv(model, inputs, root, *extra) -> list[str]:
    return ["score", "--model", str(model), "--input", str(inputs), "--output", str(root), "--layout", "runs",
            "--run-date", RUN_DATE, *extra]  # fmt: skip


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_batch", *argv], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def visible_paths(root: pathlib.Path) -> list[str]:
    """The ``path`` column a plain reader (pyarrow.dataset, Hive partitions) sees in ROOT/predictions."""
    if not any((root / "predictions").rglob("*.parquet")):
        return []
    return pads.dataset(root / "predictions", partitioning="hive").to_table(columns=["path"]).column(0).to_pylist()


def read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Paused:
    """A ``score`` launcher started, then SIGSTOPped as soon as it holds the leases ``names``."""

    def __init__(self, argv: list[str], root: pathlib.Path, names: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_batch", *argv], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        leases = [root / "_claims" / f"{name}.json" for name in names]
        deadline = time.monotonic() + 240
        while not all(read_json(p) for p in leases):
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the launcher took no lease in 240 s"
            time.sleep(0.002)
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.leases = leases

    def move_to_another_host(self) -> None:
        """What a launcher on another host looks like once its heartbeat is older than the ttl."""
        for path in self.leases:
            owner = read_json(path)
            path.write_text(json.dumps({**owner, "host": "another-host.invalid", "heartbeat_at": 0}))

    def resume(self) -> subprocess.CompletedProcess:
        os.killpg(self.proc.pid, signal.SIGCONT)
        out, err = self.proc.communicate(timeout=300)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate(timeout=60)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mnist-batch: error:")]


def test_a_launcher_that_lost_its_lease_to_runs_clean_moves_nothing_in(tiny_model, sample_data, tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 200)
    argv = score_argv(tiny_model, inputs, root, "--run-id", "paused")
    paused = Paused(argv, root, ["run=paused"])
    try:
        paused.move_to_another_host()
        cleaned = cli("runs", "clean", str(root))
        assert cleaned.returncode == 0 and "1 stale lease(s)" in cleaned.stdout, cleaned
        resumed = paused.resume()
    finally:
        paused.kill()
    # Before: it committed over a deleted staging folder ("shard ... is lost") and wedged the root.
    assert resumed.returncode == 2, resumed
    (line,) = error_lines(resumed.stderr)
    assert "lost its lease" in line and "run=paused.json" in line and "nothing was moved in" in line
    assert runs.committed_runs(str(root)) == [] and visible_paths(root) == []
    assert not list(root.glob("_runs/**/_COMMITTING"))
    # The root is not wedged: clean and the rerun succeed.
    assert cli("runs", "clean", str(root)).returncode == 0
    rerun = cli(*argv)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(visible_paths(root)) == 200


def test_an_incremental_takeover_and_the_resumed_first_run_never_duplicate_paths(tiny_model, sample_data, tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 200)
    first = Paused(score_argv(tiny_model, inputs, root, "--run-id", "first", "--incremental"), root,
                   ["run=first", "incremental"])  # fmt: skip
    try:
        first.move_to_another_host()
        second = cli(*score_argv(tiny_model, inputs, root, "--run-id", "second", "--incremental"))
        assert second.returncode == 0, second.stderr[-2000:]
        resumed = first.resume()
    finally:
        first.kill()
    # Before: the resumed first run moved its shards in too: 400 rows, 200 duplicate paths, a wedged root.
    assert resumed.returncode == 2, resumed
    (line,) = error_lines(resumed.stderr)
    assert "lost its lease" in line and "nothing was moved in" in line
    paths = visible_paths(root)
    assert len(paths) == 200 == len(set(paths))
    listed = cli("runs", "list", str(root))
    assert listed.returncode == 0 and "1 committed run(s)" in listed.stdout
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["second"]
    assert cli("runs", "clean", str(root)).returncode == 0
    third = cli(*score_argv(tiny_model, inputs, root, "--run-id", "third", "--incremental"))
    assert "200 files already scored" in third.stdout, third
    assert len(visible_paths(root)) == 200


def wedge(tiny_model, inputs, root, run_id, monkeypatch, *, moves_before_crash: int) -> pathlib.Path:
    """The wedged state the issue found: a ``_COMMITTING`` journal whose staged shards are gone.

    A real launch's commit is cut short after ``moves_before_crash`` table moves (its launcher
    killed), then its staging folder is deleted (what ``runs clean`` did to a paused launcher).
    """
    real_rename = fs.rename
    moved = []

    def crash(src, dst):
        if len(moved) == moves_before_crash:
            raise KeyboardInterrupt("killed mid-commit")
        moved.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(fs, "rename", crash)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", run_id)) == 130  # "interrupted"
    monkeypatch.setattr(fs, "rename", real_rename)
    (journal,) = root.glob(f"_runs/dt=*/run={run_id}/_COMMITTING")
    for staging in (root / "_staging").iterdir():
        fs.delete_tree(str(staging))
    return journal


def test_an_aborted_commit_is_rolled_back_by_runs_clean_and_by_the_next_launch(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 20)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "kept")) == 0
    # Two of its five tables were moved in before the crash: rolled back, no reader sees them.
    journal = wedge(tiny_model, inputs, root, "cut", monkeypatch, moves_before_crash=2)
    capsys.readouterr()
    # Before: `runs clean` (and every later `score`) failed with "shard ... is lost", exit 2.
    assert cli_main(["runs", "clean", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "rolled back 1 aborted commit(s)" in out
        and f"rolled back (its shards were gone; the run is not committed): {journal}" in out
    )
    assert not journal.exists() and [r.run_id for r in runs.committed_runs(str(root))] == ["kept"]
    assert len(visible_paths(root)) == 20 and not list(root.glob("*/dt=*/run=cut"))
    assert cli_main(["runs", "clean", str(root)]) == 0 and "rolled back 0" in capsys.readouterr().out
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "cut")) == 0
    # Nothing moved yet: the next launch rolls it back itself and says so.
    journal = wedge(tiny_model, inputs, root, "cut2", monkeypatch, moves_before_crash=0)
    capsys.readouterr()
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "cut2")) == 0
    out = capsys.readouterr().out
    assert f"recovered: rolled back the aborted commit at {journal}" in out and "run cut2 committed" in out
    assert len(visible_paths(root)) == 60
    assert sorted(r.run_id for r in runs.committed_runs(str(root))) == ["cut", "cut2", "kept"]


def count_loop(table: pathlib.Path, stop: threading.Event, seen: list) -> None:
    """What a plain reader sees, pass after pass: a row count, or the exception it raised."""
    while not stop.is_set():
        try:
            seen.append(pads.dataset(table, partitioning="hive").count_rows())
        except Exception as exc:  # noqa: BLE001 - the finding itself
            seen.append(exc)


def test_a_reader_looping_during_replace_sees_the_old_run_or_the_new_never_neither(tiny_model, sample_data, tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 40)
    assert cli(*score_argv(tiny_model, inputs, root, "--run-id", "nightly", "-q")).returncode == 0
    stop, seen = threading.Event(), []
    reader = threading.Thread(target=count_loop, args=(root / "predictions", stop, seen))
    reader.start()
    try:
        for _ in range(2):
            done = cli(*score_argv(tiny_model, inputs, root, "--run-id", "nightly", "--replace", "-q"))
            assert done.returncode == 0, done.stderr
    finally:
        stop.set()
        reader.join()
    # Before: the earlier partitions were deleted before the new ones moved in (0 rows for up to
    # 160 ms a replace, and FileNotFoundError when a listed file went before it was opened).
    wrong = [n for n in seen if n != 40]
    assert len(seen) > 100 and not [n for n in wrong if not isinstance(n, FileNotFoundError)], wrong[:5]
    assert len(wrong) <= 2, f"{len(wrong)} of {len(seen)} passes missed a file: {wrong[:3]}"
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["nightly"]
    assert not list(root.glob("_staging/*")) and len(visible_paths(root)) == 40


def cut_replace(tiny_model, inputs, root, monkeypatch, *, swaps_before_crash: int) -> pathlib.Path:
    """A real ``--replace`` launch killed after ``swaps_before_crash`` table swaps; its journal."""
    real_swap, swapped = fs.swap, []

    def crash(src, dst):
        if len(swapped) == swaps_before_crash:
            raise KeyboardInterrupt("killed mid-commit")
        swapped.append(dst)
        return real_swap(src, dst)

    monkeypatch.setattr(fs, "swap", crash)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "nightly", "--replace")) == 130
    monkeypatch.setattr(fs, "swap", real_swap)
    (journal,) = root.glob("_runs/dt=*/run=nightly/_COMMITTING")
    return journal


def test_a_replace_cut_short_between_swaps_is_completed_or_uncommitted_whole(
    tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    old, new, root = tmp_path / "old", tmp_path / "new", tmp_path / "root"
    write_inputs(sample_data, old, 20)
    write_inputs(sample_data, new, 30)
    assert cli_main(score_argv(tiny_model, old, root, "--run-id", "nightly")) == 0
    assert cli_main(score_argv(tiny_model, old, root, "--run-id", "other")) == 0
    # Killed after two of six swaps, its staging (with the two swapped-out folders) intact:
    # `runs clean` rolls it forward; the new run is whole, nothing of the old one is left.
    journal = cut_replace(tiny_model, new, root, monkeypatch, swaps_before_crash=2)
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["nightly", "other"]
    capsys.readouterr()
    assert cli_main(["runs", "clean", str(root)]) == 0
    assert f"rolled forward: {journal}" in capsys.readouterr().out and not journal.exists()
    nightly = root / "predictions" / f"dt={RUN_DATE}" / "run=nightly"
    assert len(pads.dataset(nightly).to_table()) == 30 and len(visible_paths(root)) == 50
    summary = json.loads((root / "_runs" / f"dt={RUN_DATE}" / "run=nightly" / "_SUCCESS").read_text())
    assert summary["counts"]["scored"] == 30 and not list(root.glob("_staging/*"))
    # Killed after three swaps, then its staging lost (the earlier run's swapped-out folders with
    # it): the earlier run cannot be restored, so the run id is uncommitted whole, not left half
    # old and half gone; the other run is untouched.
    journal = cut_replace(tiny_model, old, root, monkeypatch, swaps_before_crash=3)
    for staging in (root / "_staging").iterdir():
        fs.delete_tree(str(staging))
    capsys.readouterr()
    assert cli_main(["runs", "clean", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"rolled back (its shards were gone; the run is not committed): {journal}" in out
    assert f"uncommitted too (the earlier run it was replacing lost files with it): {journal}" in out
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["other"]
    assert not list(root.glob("*/dt=*/run=nightly")) and len(visible_paths(root)) == 20
    assert cli_main(score_argv(tiny_model, old, root, "--run-id", "nightly")) == 0  # the id is free again


def truncate(path: pathlib.Path) -> None:
    """A disk fault or a partial copy: the shard loses its second half (and its footer)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_runs_verify_names_each_bad_shard_and_quarantines_bad_runs(tiny_model, sample_data, tmp_path, capsys):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 20)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r1", "--incremental")) == 0
    assert cli_main(["runs", "verify", str(root)]) == 0
    assert "verified 1 committed run(s) under" in capsys.readouterr().out
    (shard,) = (root / "predictions" / f"dt={RUN_DATE}" / "run=r1").glob("*.parquet")
    truncate(shard)
    # Before: the next incremental run exited 0 with "20 files already scored" and committed an empty run.
    capsys.readouterr()
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r2", "--incremental")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert str(shard) in line and f"runs verify {root} --quarantine" in line and "--run-id r1 --replace" in line
    assert [r.run_id for r in runs.committed_runs(str(root))] == ["r1"]
    assert cli_main(["runs", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"BAD dt={RUN_DATE} run=r1: {shard}: unreadable shard" in out and "1 bad, 1 problem(s)" in out
    assert cli_main(["runs", "verify", str(root), "--quarantine"]) == 1
    out = capsys.readouterr().out
    moved = root / "_quarantine" / f"dt={RUN_DATE}" / "run=r1"
    assert f"quarantined: moved to {moved}" in out
    assert (moved / "_runs" / "_SUCCESS").exists() and (moved / "predictions" / shard.name).exists()
    assert runs.committed_runs(str(root)) == [] and visible_paths(root) == []
    assert cli_main(["runs", "verify", str(root)]) == 0
    # The quarantined run's files are taken on again.
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "r2", "--incremental")) == 0
    assert "scored 20 of 20 images" in capsys.readouterr().out and len(visible_paths(root)) == 20
    # Row counts against the summary, manifest keys against predictions + errors.
    summary = root / "_runs" / f"dt={RUN_DATE}" / "run=r2" / "summary.json"
    summary.write_text(summary.read_text().replace('"scored": 20', '"scored": 21'))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mnist_batch.tables import MANIFEST_SCHEMA

    manifest = root / "manifest" / f"dt={RUN_DATE}" / "run=r2"
    extra = {
        "path": ["/nowhere.png"],
        "size": [1],
        "mtime": [0.0],
        "sha256": [None],
        "run_id": ["r2"],
        "model_id": ["m"],
        "version": [None],
    }
    pq.write_table(pa.table(extra, schema=MANIFEST_SCHEMA), manifest / "part-extra.parquet")
    assert cli_main(["runs", "verify", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = sorted(p["problem"] for p in report["problems"])
    assert report["bad_runs"] == 1 and len(problems) == 2, problems
    assert problems[0].startswith("20 rows, the summary's counts.scored is 21")
    assert problems[1].startswith("manifest keys differ from predictions + errors paths: 1 only in the manifest")


def test_a_shard_that_does_not_read_back_is_never_committed(tiny_model, sample_data, tmp_path, monkeypatch, capsys):
    from mnist_batch.runstore import shards

    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 20)
    real_close = shards.ShardWriter.close

    def close_then_lose_half(self):
        path = real_close(self)
        if "/predictions/" in path:
            truncate(pathlib.Path(path))
        return path

    monkeypatch.setattr(shards.ShardWriter, "close", close_then_lose_half)
    assert cli_main(score_argv(tiny_model, inputs, root, "--run-id", "faulty")) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "nothing committed" in line and "cannot be read back" in line and "/_staging/" in line
    assert runs.committed_runs(str(root)) == [] and visible_paths(root) == []


@pytest.mark.parametrize("key", ["stat", "hash"])
def test_file_names_that_are_not_utf8_are_scored_escaped_and_skipped_next_time(
    tiny_model, sample_data, tmp_path, capsys, key
):
    inputs, root = tmp_path / "in", tmp_path / "root"
    write_inputs(sample_data, inputs, 4)
    folder = os.fsencode(inputs / "3")
    os.makedirs(folder, exist_ok=True)
    good = next(inputs.rglob("*.png")).read_bytes()
    with open(os.path.join(folder, b"x\xff.png"), "wb") as f:  # a valid PNG, a name that is not UTF-8
        f.write(good)
    with open(os.path.join(folder, b"z\xfd\xfe.png"), "wb") as f:  # not an image
        f.write(b"\x89PNG not really")
    with open(os.path.join(folder, b"notes\xff.txt"), "wb") as f:
        f.write(b"not an image extension")
    argv = score_argv(tiny_model, inputs, root, "--incremental", "--incremental-key", key)
    # Before: exit 2, nothing committed, "'utf-8 [while running 'MatchImageFiles/...']' codec can't encode".
    assert cli_main([*argv, "--run-id", "first"]) == 0
    out = capsys.readouterr().out
    assert "scored 5 of 6 images (1 errors, 1 skipped" in out, out
    escaped = str(inputs / "3") + "/x\\xff.png"  # the byte as the four characters \xff
    paths = visible_paths(root)
    assert escaped in paths and len(paths) == 5
    table = runs.read_runs(str(root), "errors")
    assert table.column("path").to_pylist() == [str(inputs / "3") + "/z\\xfd\\xfe.png"]
    assert table.column("stage").to_pylist() == ["decode"]
    assert cli_main([*argv, "--run-id", "second"]) == 0  # the escaped keys round-trip: nothing rescored
    out = capsys.readouterr().out
    assert "scored 0 of 0 images" in out and "6 files already scored" in out, out
    assert sorted(visible_paths(root)) == sorted(paths)
