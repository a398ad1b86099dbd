"""Changed means changed (issue 33): the default incremental key (``stat``) sees a file replaced by
another image of the same size with its mtime kept (``touch -r``, ``cp -p``, ``rsync -t``), through
the real CLI on a local disk; run stores written before the manifest's ``version`` column stay
readable and their files are matched on the old fields.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.cli import main as cli_main  # noqa: E402
from mnist_batch.runstore import runs  # noqa: E402
from mnist_batch.tables import MANIFEST_SCHEMA  # noqa: E402

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
N = 8
pytestmark = pytest.mark.slow  # each scores a run through the CLI in-process (a few seconds)


def write_png(path: pathlib.Path, pixels) -> None:
    """An uncompressed PNG: every 28x28 digit gives a file of the same size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, compress_level=0)


def score(model, inputs, root, run_id, capsys) -> str:
    argv = ["score", "--model", str(model), "--input", str(inputs), "--output", str(root), "--layout", "runs",
            "--run-id", run_id, "--incremental"]  # fmt: skip
    assert cli_main(argv) == 0
    return capsys.readouterr().out


def scored_paths(root: pathlib.Path, run_id: str) -> list[str]:
    (run,) = [r for r in runs.committed_runs(str(root)) if r.run_id == run_id]
    return sorted(runs.read_run_table(run, "predictions").column("path").to_pylist())


def replace_keeping_size_and_mtime(path: pathlib.Path, pixels, how: str, scratch: pathlib.Path) -> None:
    """``path`` replaced by another image of the same size, its mtime (and, ``cp -p``, mode) kept."""
    before = path.stat()
    if how == "touch -r":  # written in place (same inode), then the old mtime set back
        write_png(scratch / "new.png", pixels)
        path.write_bytes((scratch / "new.png").read_bytes())
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:  # cp -p / rsync -t: a copy made elsewhere with the old times, renamed over it (new inode)
        write_png(scratch / "new.png", pixels)
        os.utime(scratch / "new.png", ns=(before.st_atime_ns, before.st_mtime_ns))
        shutil.copy2(scratch / "new.png", scratch / "copy.png")
        os.replace(scratch / "copy.png", path)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_same_size_same_mtime_replacement_is_scored_again(tiny_model, sample_data, tmp_path, capsys):
    train = sample_data.split("train")
    inputs, root = tmp_path / "in", tmp_path / "root"
    for i in range(N):
        write_png(inputs / f"{i}.png", train.images[i])
    assert f"scored {N} of {N} images" in score(tiny_model, inputs, root, "r1", capsys)
    replace_keeping_size_and_mtime(inputs / "0.png", train.images[N], "touch -r", tmp_path)
    replace_keeping_size_and_mtime(inputs / "1.png", train.images[N + 1], "cp -p", tmp_path)
    out = score(tiny_model, inputs, root, "r2", capsys)
    # Before: "8 files already scored", the two new images never scored.
    assert f"{N - 2} files already scored" in out, out
    assert scored_paths(root, "r2") == [str(inputs / "0.png"), str(inputs / "1.png")]
    # The next run skips them: their new versions are recorded.
    assert f"{N} files already scored" in score(tiny_model, inputs, root, "r3", capsys)
    manifest = runs.read_runs(str(root), "manifest")
    assert manifest.schema.field("version").type == pa.string() and None not in manifest.column("version").to_pylist()


def test_a_history_written_before_the_version_column_still_works(tiny_model, sample_data, tmp_path, capsys):
    """Files scored under the old key are matched on the old fields (path, size, mtime): not rescored
    after an upgrade; a replacement keeping size and mtime is seen once they were scored again."""
    train = sample_data.split("train")
    inputs, root = tmp_path / "in", tmp_path / "root"
    for i in range(N):
        write_png(inputs / f"{i}.png", train.images[i])
    score(tiny_model, inputs, root, "old", capsys)
    old_schema = pa.schema([f for f in MANIFEST_SCHEMA if f.name != "version"])
    for shard in root.glob("manifest/**/*.parquet"):  # as a version before the column wrote it
        pq.write_table(pq.read_table(shard).select(old_schema.names).cast(old_schema), shard)
    assert "version" not in pq.read_schema(next(root.glob("manifest/**/*.parquet"))).names
    # Readers: the old shards read with the column as nulls.
    assert runs.read_runs(str(root), "manifest").column("version").to_pylist() == [None] * N
    assert cli_main(["runs", "verify", str(root)]) == 0
    capsys.readouterr()

    replace_keeping_size_and_mtime(inputs / "0.png", train.images[N], "touch -r", tmp_path)
    write_png(inputs / "new.png", train.images[N + 1])
    out = score(tiny_model, inputs, root, "r2", capsys)
    assert f"{N} files already scored" in out, out  # matched on the old fields, 0.png included
    assert scored_paths(root, "r2") == [str(inputs / "new.png")]
    # From the new run on, versions are recorded: new.png, replaced keeping size and mtime, is seen.
    replace_keeping_size_and_mtime(inputs / "new.png", train.images[N + 2], "cp -p", tmp_path)
    out = score(tiny_model, inputs, root, "r3", capsys)
    assert f"{N} files already scored" in out and scored_paths(root, "r3") == [str(inputs / "new.png")]
