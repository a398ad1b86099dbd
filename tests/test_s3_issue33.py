"""Issue 33 on a real S3-compatible server (VersityGW, tests/s3_server.py): a folder named without its
trailing ``/`` is read like a local folder; refused credentials are named as such; a lease the
server could not be asked about is unknown, never gone.
"""

from __future__ import annotations

import pytest
import s3_server as s3_fixtures
from PIL import Image

from mnist_batch.cli import main as cli_main
from mnist_batch.runstore import claims, fs, runs, s3
from mnist_batch.scoring import read
from mnist_batch.scoring.errors import ScoringError

import scoring_fixtures

s3_server = s3_fixtures.s3_server
s3_bucket = s3_fixtures.s3_bucket
tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
pytestmark = pytest.mark.s3
IMAGES = 6


def upload_scans(s3_server, bucket: str, sample_data, tmp_path) -> None:
    client, name = s3_server.client(), bucket.removeprefix("s3://")
    test = sample_data.split("test")
    for i in range(IMAGES):
        path = tmp_path / f"{i}.png"
        Image.fromarray(test.images[i]).save(path)
        client.upload_file(str(path), name, f"scans/{test.labels[i]}/{i:05d}.png")


def test_a_folder_without_its_slash_is_read_like_a_local_folder(s3_server, s3_bucket, sample_data, tmp_path):
    upload_scans(s3_server, s3_bucket, sample_data, tmp_path)
    # Before: [s3://b/scans] as a pattern, then "--input: s3://b/scans matches no files".
    assert read.expand_input(f"{s3_bucket}/scans") == [f"{s3_bucket}/scans/**"]
    assert read.expand_input(f"{s3_bucket}/scans/") == [f"{s3_bucket}/scans/**"]
    one = f"{s3_bucket}/scans/{sample_data.split('test').labels[0]}/00000.png"
    assert read.expand_input(one) == [one]  # an object of that name is read alone
    assert read.expand_input(f"{s3_bucket}/sca") == [f"{s3_bucket}/sca"]  # a key prefix is no folder
    with pytest.raises(ScoringError, match="sca matches no files"):
        read.check_patterns_match(read.expand_input(f"{s3_bucket}/sca"))


def test_score_reads_a_bucket_folder_named_without_its_slash(s3_server, s3_bucket, tiny_model, sample_data, tmp_path):
    upload_scans(s3_server, s3_bucket, sample_data, tmp_path)
    root = tmp_path / "root"
    argv = ["score", "--model", str(tiny_model), "--input", f"{s3_bucket}/scans", "--output", str(root),
            "--layout", "runs", "--run-id", "r1"]  # fmt: skip
    assert cli_main(argv) == 0
    assert runs.read_runs(str(root), "predictions").num_rows == IMAGES


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AWS_ACCESS_KEY_ID", "not-a-key", "the server refused the credentials"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret", "the server refused the credentials"),
        (None, None, "no such bucket"),
    ],
)
def test_refused_credentials_are_named_as_such(variable, value, expected, s3_server, s3_bucket, monkeypatch, capsys):
    bucket = s3_bucket if variable else "s3://no-such-bucket-here"
    if variable:
        monkeypatch.setenv(variable, value)
    fs.configure()  # clients read the variables again
    try:
        reason = s3.check_bucket(f"{bucket}/runs")
        assert reason is not None and expected in reason, reason
        if variable:  # the server's own code, not a guess from a bodyless HEAD
            assert any(code in reason for code in s3.CREDENTIAL_CODES), reason
        capsys.readouterr()
        assert cli_main(["runs", "list", f"{bucket}/runs"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert expected in line
    finally:
        monkeypatch.undo()
        fs.configure()


def test_a_lease_the_server_cannot_answer_for_is_unknown_not_gone(s3_server, s3_bucket, monkeypatch):
    root = f"{s3_bucket}/runs"
    lease = claims.claim(root, "run=r1", run_id="r1", attempt="r1.a")
    monkeypatch.setattr(claims, "UNKNOWN_WAIT_S", 1.0)
    s3_server.stop()
    try:
        # Before: "lost its lease ... (now held by no one (deleted as stale))".
        with pytest.raises(claims.LeaseUnknownError, match="is unknown") as caught:
            claims.check_held([lease.fence], "commit run r1")
        assert not isinstance(caught.value, claims.LeaseLostError)
        with pytest.raises(claims.LeaseUnknownError):
            claims.read_lease(lease.uri)
    finally:
        s3_server.start()
    claims.check_held([lease.fence], "commit run r1")  # back: still ours
    lease.release()
    assert claims.read_lease(lease.uri) is None  # released: no lease, a known answer


def test_an_object_replaced_keeping_size_and_mtime_is_scored_again(
    s3_server, s3_bucket, tiny_model, sample_data, tmp_path, capsys
):
    """Incremental on a bucket: the listing's ETag is the object's version. The replacement keeps
    its size and its ``LastModified`` (the posix backend's file mtime, set back as ``touch -r``)."""
    import os

    upload_scans(s3_server, s3_bucket, sample_data, tmp_path)
    root = tmp_path / "root"
    argv = ["score", "--model", str(tiny_model), "--input", f"{s3_bucket}/scans/", "--output", str(root),
            "--layout", "runs", "--incremental"]  # fmt: skip
    assert cli_main([*argv, "--run-id", "r1"]) == 0
    manifest = runs.read_runs(str(root), "manifest")
    assert all(v and len(v) >= 32 for v in manifest.column("version").to_pylist())  # ETags
    test = sample_data.split("test")
    key = f"scans/{test.labels[0]}/00000.png"
    backing = s3_server.data / s3_bucket.removeprefix("s3://") / key
    before = backing.stat()
    name = s3_bucket.removeprefix("s3://")
    listed_before = s3_server.client().head_object(Bucket=name, Key=key)
    Image.fromarray(test.images[0] * 0).save(tmp_path / "new.png", optimize=True)  # a blank page: a few bytes
    data = (tmp_path / "new.png").read_bytes()
    assert len(data) < before.st_size
    data += b"\0" * (before.st_size - len(data))  # padded after IEND to the same size (decoders stop at IEND)
    s3.put(f"{s3_bucket}/{key}", data)
    os.utime(backing, ns=(before.st_atime_ns, before.st_mtime_ns))
    head = s3_server.client().head_object(Bucket=name, Key=key)
    assert head["ContentLength"] == before.st_size and head["LastModified"] == listed_before["LastModified"]
    assert head["ETag"] != listed_before["ETag"]  # only the ETag tells
    capsys.readouterr()
    assert cli_main([*argv, "--run-id", "r2"]) == 0
    out = capsys.readouterr().out
    # Before: "6 files already scored", the new content never scored.
    assert f"{IMAGES - 1} files already scored" in out, out
    (run,) = [r for r in runs.committed_runs(str(root)) if r.run_id == "r2"]
    assert runs.read_run_table(run, "predictions").column("path").to_pylist() == [f"{s3_bucket}/{key}"]


def test_the_s3_folder_listing_gives_what_beam_s_match_gives_plus_etags(s3_server, s3_bucket, sample_data, tmp_path):
    """Same paths, sizes and mtimes as Beam's ``MatchAll`` (manifests written before keep matching)."""
    from apache_beam.io.filesystems import FileSystems

    from mnist_batch.scoring.matching import ListS3FolderFn

    upload_scans(s3_server, s3_bucket, sample_data, tmp_path)
    pattern = f"{s3_bucket}/scans/**"
    beam = sorted(
        (m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in FileSystems.match([pattern])[0].metadata_list
    )
    fn = ListS3FolderFn()
    fn.setup()
    ours = list(fn.process(pattern))
    assert sorted((m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in ours) == beam and len(beam) == IMAGES
    assert all(m.version and '"' not in m.version for m in ours)
    with pytest.raises(ScoringError, match="matches no files"):
        list(fn.process(f"{s3_bucket}/none/**"))
