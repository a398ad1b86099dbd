"""An S3 endpoint that never answers fails a command in bounded time, in one line (issue 33, item 4).

Two endpoints on loopback, no S3 server needed: one that completes the TCP handshake and then says
nothing (an overloaded or hung server), and one whose accept queue is full, so that the kernel drops
the connection attempts (a black hole: firewall, wrong route). Before: botocore's defaults (60 s to
connect, 60 s per read, 5 attempts) held ``runs list`` and a launch for minutes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

pytest.importorskip("boto3", reason="boto3 comes with the aws extra")

from mnist_batch.cli import main as cli_main
from mnist_batch.runstore import fs, s3

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_litert_model
sample_data = scoring_fixtures.sample_data
# The bucket tier (make test-s3, which .ci/run runs): each case waits out the timeouts (~15 s), a
# minute of make test's time spent sleeping.
pytestmark = [pytest.mark.slow, pytest.mark.s3]
LIMIT_S = 30.0


@contextlib.contextmanager
def silent_endpoint(black_hole: bool):
    """``http://127.0.0.1:PORT`` of a socket that never answers (``black_hole``: never even accepts)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0 if black_hole else 16)
    fillers, held = [], []
    if not black_hole:  # accept every connection, answer nothing

        def hold() -> None:
            with contextlib.suppress(OSError):
                while True:
                    held.append(server.accept()[0])

        threading.Thread(target=hold, daemon=True).start()
    else:  # fill the accept queue: further SYNs are dropped, connect() hangs
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(server.getsockname())
            fillers.append(s)
        time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        for s in fillers + held:
            s.close()
        server.close()


@pytest.mark.parametrize("command", ["runs list", "score"])
@pytest.mark.parametrize("black_hole", [False, True], ids=["no answer", "black hole"])
def test_an_endpoint_that_never_answers_fails_in_bounded_time(
    command, black_hole, tiny_model, sample_data, tmp_path, monkeypatch, capsys
):
    scoring_fixtures.write_train_digits(sample_data, tmp_path / "in", 4)
    where = ["--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", "s3://b/runs"]
    argv = ["runs", "list", "s3://b/runs"] if command == "runs list" else ["score", *where, "--layout", "runs"]
    with silent_endpoint(black_hole) as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        fs.configure()
        try:
            started = time.monotonic()
            code = cli_main(argv)
            took = time.monotonic() - started
        finally:
            monkeypatch.undo()
            fs.configure()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "s3://b/runs" in err[0], err
    assert "timeout" in err[0].lower() or "timed out" in err[0].lower(), err
    assert took <= LIMIT_S, f"{took:.1f} s"
    print(f"{command}, {'black hole' if black_hole else 'no answer'}: exit 2 after {took:.1f} s: {err[0]}")


@pytest.mark.parametrize("black_hole", [False, True], ids=["no answer", "black hole"])
def test_a_shard_upload_fails_in_bounded_time(black_hole, monkeypatch):
    """A run's shards go up through the storage interface's S3 client (bounded: ~20 s to a black
    hole); they went through Beam's S3 filesystem, whose client Beam makes without a config
    (botocore's 60 s to connect and 5 attempts held an upload for 180 s here). What still goes
    through Beam's (glob matches) gets the same bounds in every step's setup (runstore/beam_s3.py),
    checked here too. An endpoint that never answers waits out the 30 s read timeout on each try:
    shortened here to 2 s, which also shows the setting reaching both clients."""
    import pyarrow as pa
    from apache_beam.io.aws.s3io import S3IO

    from mnist_batch.runstore.errors import UncommittedStorageError, store_unreachable
    from mnist_batch.scoring.sinks import WriteShardsFn

    if not black_hole:
        monkeypatch.setattr(s3, "READ_TIMEOUT_S", 2.0)
    with silent_endpoint(black_hole) as endpoint:
        for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        fs.configure()
        try:
            writer = WriteShardsFn("s3://b/runs/_staging/a/manifest", pa.schema([("a", pa.int64())]))
            writer.setup()  # as on a worker
            config = S3IO(options={"s3_endpoint_url": endpoint}).client.client.meta.config
            assert (config.connect_timeout, config.read_timeout) == (s3.CONNECT_TIMEOUT_S, s3.READ_TIMEOUT_S)
            assert config.retries["mode"] == "standard"  # botocore's defaults: 60 s, 60 s, "legacy" (5 attempts)
            writer.start_bundle()
            writer.process({"a": 1})
            started = time.monotonic()
            with pytest.raises(UncommittedStorageError) as caught:
                list(writer.finish_bundle())  # the shard is written, and uploaded, as the bundle ends
            took = time.monotonic() - started
        finally:
            monkeypatch.undo()
            fs.configure()
    line = str(caught.value)
    assert line.startswith("writing shards into s3://b/runs/_staging/a/manifest: the storage failed: "), line
    assert endpoint.removeprefix("http://") in line and "timeout" in line.lower(), line
    assert store_unreachable(caught.value.__cause__)
    assert took <= LIMIT_S, f"{took:.1f} s"
    print(f"a shard upload, {'black hole' if black_hole else 'no answer'}: {line:.160} after {took:.1f} s")
