"""The whole command line on a bucket of a real S3-compatible server (tests/s3_server.py).

Scans, the model (``.keras``, its card and its LiteRT file) and the runs root all live in the
bucket; Beam's own S3 filesystem reads and writes them with the ``AWS_*`` variables a user sets.
"""

from __future__ import annotations

import pathlib

import pytest
import s3_server as s3_fixtures
from PIL import Image

from mnist_batch.cli import main as cli_main
from mnist_batch.runstore import fs, runs

import scoring_fixtures

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data
pytestmark = [pytest.mark.s3, pytest.mark.slow]
IMAGES = 12


@pytest.fixture
def bucket_inputs(s3_server, s3_bucket, tiny_model, sample_data, tmp_path):
    """``(bucket, model uri)``: IMAGES labelled PNGs under scans/<label>/ and the model under models/."""
    client, bucket = s3_server.client(), s3_bucket.removeprefix("s3://")
    test = sample_data.split("test")
    picks = [int(i) for i in range(0, len(test.labels), max(1, len(test.labels) // IMAGES))][:IMAGES]
    for i in picks:
        path = tmp_path / f"{i}.png"
        Image.fromarray(test.images[i]).save(path)
        client.upload_file(str(path), bucket, f"scans/{test.labels[i]}/{i:05d}.png")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for f in tiny_model.parent.iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    assert cli_main(["export", str(model_dir / tiny_model.name)]) == 0  # the LiteRT file, in the card
    for f in model_dir.iterdir():
        client.upload_file(str(f), bucket, f"models/{f.name}")
    return s3_bucket, f"{s3_bucket}/models/{tiny_model.name}"


def score(model: str, bucket: str, run_id: str, *extra: str) -> int:
    where = ["--input", f"{bucket}/scans/", "--model", model, "--output", f"{bucket}/runs"]
    return cli_main(
        ["score", *where, "--layout", "runs", "--incremental", "--run-id", run_id, "--run-date", "2026-12-01", *extra]
    )


def test_score_list_report_monitor_clean_on_a_bucket(bucket_inputs, tmp_path, capsys):
    bucket, model = bucket_inputs
    root = f"{bucket}/runs"
    assert score(model, bucket, "n1") == 0
    out = capsys.readouterr().out
    assert f"scored {IMAGES} of {IMAGES} images" in out and "run n1 committed" in out
    committed = runs.committed_runs(root)
    assert [r.run_id for r in committed] == ["n1"]
    summary = runs.read_runs(root, "runs").to_pylist()[0]
    assert summary["runtime"] == "litert"  # the fast runtime's file, read from the bucket, its sha256 checked
    objects = fs.list_files(root)
    assert not any("/_staging/" in o or "/_claims/" in o for o in objects)  # moved, released
    predictions = runs.read_runs(root, "predictions")
    assert predictions.num_rows == IMAGES
    assert all(p.startswith(f"{bucket}/scans/") for p in predictions.column("path").to_pylist())

    assert score(model, bucket, "n2") == 0  # incremental: every file already scored
    assert f"{IMAGES} files already scored" in capsys.readouterr().out
    assert cli_main(["runs", "list", root]) == 0
    assert "2 committed run(s)" in capsys.readouterr().out

    dest = tmp_path / "report"
    assert cli_main(["report", f"{root}/_runs/dt=2026-12-01/run=n1", "--dest", str(dest)]) == 0
    page = (dest / "report.html").read_text(encoding="utf-8")
    assert "n1" in page and (dest / "confusion.png").is_file()
    assert cli_main(["monitor", root, "--output", str(tmp_path / "monitor")]) == 0
    assert "2 committed run(s)" in capsys.readouterr().out
    assert (tmp_path / "monitor" / "monitor.html").is_file()
    assert cli_main(["runs", "clean", root]) == 0


def test_pyarrow_reads_the_committed_table_from_the_bucket(bucket_inputs, s3_server):
    """A reader's recipe on the bucket: pyarrow's own S3 filesystem, Hive partitions, no Beam."""
    import pyarrow.dataset as ds
    from pyarrow import fs as pafs

    bucket, model = bucket_inputs
    assert score(model, bucket, "n1") == 0
    s3 = pafs.S3FileSystem(
        endpoint_override=s3_server.endpoint,
        access_key=s3_fixtures.ACCESS_KEY,
        secret_key=s3_fixtures.SECRET_KEY,
        region=s3_fixtures.REGION,
    )
    table = ds.dataset(
        f"{bucket.removeprefix('s3://')}/runs/predictions", filesystem=s3, format="parquet", partitioning="hive"
    ).to_table()
    assert table.num_rows == IMAGES and set(table.column("run").to_pylist()) == {"n1"}


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong credentials", "the server refused the credentials"), ("no bucket", "no such bucket")],
)
def test_bucket_refusals_are_one_line_and_exit_2(case, expected, bucket_inputs, monkeypatch, capsys):
    bucket, model = bucket_inputs
    before = fs.list_files(bucket)
    if case == "wrong credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        output_bucket = bucket
    else:
        output_bucket = "s3://no-such-bucket-here"
    fs.configure()  # clients read the variables again
    try:
        capsys.readouterr()
        where = ["--input", f"{bucket}/scans/", "--model", model, "--output", f"{output_bucket}/runs"]
        code = cli_main(["score", *where, "--layout", "runs", "--run-id", "r1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
        assert cli_main(["runs", "list", f"{output_bucket}/runs"]) == 2
        assert expected in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        fs.configure()
    assert fs.list_files(bucket) == before  # nothing written
    assert not pathlib.Path("runs").exists()


def test_a_group_read_ahead_from_the_bucket_keeps_each_file_s_error(s3_server, s3_bucket, sample_data, tmp_path):
    """The scoring step reads a group's objects at once; a missing or oversized one is that file's read error."""
    import io

    from apache_beam.io import fileio
    from apache_beam.io.filesystem import FileMetadata

    from mnist_batch.scoring.decode import DecodeGroupFn, ImageGroup

    client, bucket = s3_server.client(), s3_bucket.removeprefix("s3://")
    test = sample_data.split("test")
    files = []
    for i in range(5):
        buf = io.BytesIO()
        Image.fromarray(test.images[i]).save(buf, format="PNG")
        client.put_object(Bucket=bucket, Key=f"scans/{i}.png", Body=buf.getvalue())
        files.append(fileio.ReadableFile(FileMetadata(f"{s3_bucket}/scans/{i}.png", len(buf.getvalue()), 0.0)))
    files.append(fileio.ReadableFile(FileMetadata(f"{s3_bucket}/scans/gone.png", 100, 0.0)))
    client.put_object(Bucket=bucket, Key="scans/big.png", Body=b"x" * 5000)
    files.append(fileio.ReadableFile(FileMetadata(f"{s3_bucket}/scans/big.png", 10, 0.0)))  # grew since listed
    fn = DecodeGroupFn(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"), "r1", max_file_bytes=1000)
    fn.setup()
    try:
        out = list(fn.process(files))
    finally:
        fn.teardown()
    groups = [o for o in out if isinstance(o, ImageGroup)]
    errors = {o.value["path"]: o.value for o in out if not isinstance(o, ImageGroup)}
    assert len(groups) == 1 and len(groups[0].keys) == 5
    assert [k.path for k in groups[0].keys] == [f.metadata.path for f in files[:5]]  # the group's order kept
    assert errors[f"{s3_bucket}/scans/gone.png"]["stage"] == "read"
    assert errors[f"{s3_bucket}/scans/big.png"]["error_type"] == "FileTooLargeError"


def test_beam_s3_options_alone_reach_every_worker_process(bucket_inputs, s3_server):
    """No AWS_* variables, only Beam's --s3_* options, workers in separate processes: the run commits."""
    import os
    import subprocess
    import sys

    bucket, model = bucket_inputs
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    options = ["--s3_endpoint_url", s3_server.endpoint, "--s3_access_key_id", s3_fixtures.ACCESS_KEY]
    options += ["--s3_secret_access_key", s3_fixtures.SECRET_KEY, "--s3_region_name", s3_fixtures.REGION]
    options += ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    command = [sys.executable, "-m", "mnist_batch", "score", "--input", f"{bucket}/scans/", "--model", model]
    command += ["--output", f"{bucket}/runs", "--layout", "runs", "--incremental", "--run-id", "m1", *options]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "run m1 committed" in done.stdout
    again = subprocess.run(
        [*command[: -len(options) - 1], "m2", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0 and f"{IMAGES} files already scored" in again.stdout, again.stderr[-3000:]
