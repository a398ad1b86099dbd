"""The run store's own package: one answer to "is this path remote?", literal file operations on a
``file://`` root as on a plain path, and a store read without the scoring graph."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("apache_beam")

from mnist_batch.files import is_remote, local_path
from mnist_batch.runstore import fs, local
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.layout import Layout
from mnist_batch.runstore.roots import prepare_root


@pytest.mark.parametrize(
    ("uri", "remote"),
    [("/data/x.png", False), ("rel/x", False), ("file:///data/x.png", False), ("gs://b/x", True), ("s3://b/x", True)],
)
def test_one_answer_to_is_remote_file_uris_are_local(uri, remote):
    assert is_remote(uri) is remote and fs.is_remote is is_remote
    assert local_path("file:///data/x") == "/data/x" and local_path("/data/x") == "/data/x"


def test_file_operations_on_a_file_uri_act_on_the_local_path(tmp_path):
    root = f"file://{tmp_path}/store"
    fs.write_atomic(fs.join(root, "a", "one.txt"), "1")
    assert fs.create_exclusive(fs.join(root, "b.txt"), "2") and not fs.create_exclusive(fs.join(root, "b.txt"), "3")
    assert (tmp_path / "store" / "a" / "one.txt").read_text() == "1" and fs.read_text(fs.join(root, "b.txt")) == "2"
    assert fs.list_files(root) == [f"{root}/a/one.txt", f"{root}/b.txt"]  # names as they were asked
    assert fs.list_dir(root) == ["a", "b.txt"] and fs.exists(fs.join(root, "a"))
    fs.rename(fs.join(root, "b.txt"), fs.join(root, "c", "b.txt"))
    assert (tmp_path / "store" / "c" / "b.txt").is_file()
    fs.delete_file(fs.join(root, "c", "b.txt"))
    fs.remove_empty_dir(fs.join(root, "c"))
    assert not (tmp_path / "store" / "c").exists()
    fs.delete_tree(root)
    assert not (tmp_path / "store").exists()


def test_the_store_refuses_with_its_own_error(tmp_path):
    (tmp_path / "flat" / "predictions").mkdir(parents=True)
    (tmp_path / "flat" / "summary.json").write_text("{}")
    with pytest.raises(RunStoreError, match="holds a flat run's outputs, not a runs root"):
        prepare_root(Layout("runs", str(tmp_path / "flat"), "r1", "2026-01-01"), overwrite=False)


@pytest.mark.slow
def test_reading_a_store_never_imports_the_scoring_graph():
    code = (
        "import sys\n"
        "import mnist_batch.runstore.runs, mnist_batch.monitoring.monitor\n"
        "bad = sorted(m for m in sys.modules if m.startswith('mnist_batch.scoring'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2", "three-renames"])
def test_swap_exchanges_two_folders_whole_with_or_without_renameat2(tmp_path, monkeypatch, atomic):
    a, b = tmp_path / "staged [x]", tmp_path / "run=id"
    a.mkdir()
    b.mkdir()
    (a / "new.parquet").write_text("new")
    (b / "old.parquet").write_text("old")
    if not atomic:  # a C library, kernel or filesystem without RENAME_EXCHANGE
        monkeypatch.setattr(local, "exchange", lambda *_: False)
    assert fs.swap(f"file://{a}", str(b)) is atomic
    assert [p.name for p in b.iterdir()] == ["new.parquet"] and [p.name for p in a.iterdir()] == ["old.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run=id", "staged [x]"]  # nothing left aside
    if atomic:  # a failure other than "unsupported" is raised, not taken for a missing feature
        with pytest.raises(FileNotFoundError):
            fs.exchange(str(tmp_path / "gone"), str(b))


def test_a_replacing_commit_deletes_the_earlier_runs_table_row_first(tmp_path):
    """The runs table's row is moved in last; deleting it first keeps a reader joining on it whole-or-nothing."""
    from mnist_batch.runstore.layout import earlier_outputs

    root = tmp_path / "root"
    for rel in ("_runs/dt=2026-01-01/run=r1/_SUCCESS", "predictions/dt=2026-01-01/run=r1/part-0.parquet",
                "errors/dt=2026-01-01/run=r1/part-0.parquet", "runs/dt=2026-01-01/run=r1/part-0.parquet"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    doomed = earlier_outputs(Layout("runs", str(root), "r1", "2026-01-02"))
    assert doomed[0] == str(root / "runs" / "dt=2026-01-01" / "run=r1")
    assert str(root / "predictions" / "dt=2026-01-01" / "run=r1") in doomed[1:]


def test_a_runs_partition_folders_are_named_and_read_back_by_one_pair_of_functions():
    from mnist_batch.tables import parse_partition, partition_parts

    parts = partition_parts("2026-06-01", "nightly")
    assert parts == ("dt=2026-06-01", "run=nightly")
    assert parse_partition([*parts, "part-0.parquet"]) == ("2026-06-01", "nightly")
    assert parse_partition(["run=x", "dt=y"]) is None and parse_partition(["dt=y"]) is None


def test_s3_mtimes_are_the_seconds_beams_s3_filesystem_gives():
    """The S3 folder listing converts LastModified as Beam's match does: earlier runs' keys still match."""
    import datetime

    s3io = pytest.importorskip("apache_beam.io.aws.s3io")
    from mnist_batch.runstore import s3

    for moment in (
        datetime.datetime(2026, 12, 7, 4, 1, 45, 123456, tzinfo=datetime.UTC),
        datetime.datetime(2026, 6, 1, 23, 59, 59, tzinfo=datetime.UTC),
    ):
        assert s3.mtime_seconds(moment) == s3io.S3IO._updated_to_seconds(moment)


def test_a_file_created_exclusively_is_whole_when_it_appears_and_exactly_one_caller_wins(tmp_path, monkeypatch):
    """The layout file and the leases: written aside, then linked in, so no reader sees them empty."""
    import os

    from mnist_batch.runstore import fs

    seen = []
    real_link = os.link

    def link(src, dst):  # what a reader finds at the moment the file appears
        real_link(src, dst)
        seen.append(pathlib.Path(dst).read_text())

    monkeypatch.setattr(os, "link", link)
    target = tmp_path / "_mnist_batch_layout.json"
    assert fs.create_exclusive(str(target), '{"a": 1}\n') is True
    assert seen == ['{"a": 1}\n']
    assert fs.create_exclusive(str(target), '{"b": 2}\n') is False and target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")  # a filesystem without hard links

    monkeypatch.setattr(os, "link", no_links)
    other = tmp_path / "lease.json"
    assert fs.create_exclusive(str(other), "x") is True and other.read_text() == "x"
    assert fs.create_exclusive(str(other), "y") is False and other.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, other.name]
