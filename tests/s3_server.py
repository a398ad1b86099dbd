"""A real S3-compatible server for the tests marked ``s3`` (``make test-s3``): VersityGW on loopback.

The binary is built once by ``deploy/s3/server.sh build`` (``go install`` from the Go module proxy
into ``.cache/s3/bin``, git-ignored); the tests skip, saying why, only when it cannot be built.
The session fixture starts its own server on a free port with its data in a temporary folder
(never the one of ``make s3-up``), points the usual ``AWS_*`` variables at it, and stops it at the
end; :meth:`S3Server.stop` and :meth:`S3Server.start` let a test take it away and bring it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import socket
import subprocess
import time
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVER_SH = REPO / "deploy" / "s3" / "server.sh"
ACCESS_KEY = "mnistbatch-test"
SECRET_KEY = "mnistbatch-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclasses.dataclass
class S3Server:
    binary: str
    data: pathlib.Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables a user sets (``make s3-up`` prints them)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def start(self) -> None:
        env = dict(os.environ, ROOT_ACCESS_KEY=ACCESS_KEY, ROOT_SECRET_KEY=SECRET_KEY, VGW_REGION=REGION)
        log = open(self.data.parent / "server.log", "ab")  # noqa: SIM115 -- the server's, closed with it
        self.process = subprocess.Popen(
            [self.binary, "--port", f"127.0.0.1:{self.port}", "--quiet", "posix", str(self.data)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the S3 server did not start (log: {self.data.parent / 'server.log'})")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def bucket(self, prefix: str = "t") -> str:
        """A new empty bucket (posix backend: a folder under the data root); its ``s3://`` URI."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        (self.data / name).mkdir()
        return f"s3://{name}"

    def client(self, **overrides):
        import boto3

        kwargs = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "region_name": REGION,
        }
        return boto3.session.Session().client("s3", **{**kwargs, **overrides})


def build() -> str:
    """The server's binary, built on first use; skips the calling test, saying why, if it cannot be."""
    done = subprocess.run([str(SERVER_SH), "build"], capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the S3 server (deploy/s3/server.sh build) cannot be built here: {reason}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running server, the ``AWS_*`` variables pointing at it for the whole session."""
    pytest.importorskip("boto3", reason="boto3 comes with the aws extra: pip install -e '.[dev]'")
    from mnist_batch.runstore import fs

    binary = build()
    base = tmp_path_factory.mktemp("s3")
    server = S3Server(binary, base / "data", free_port())
    server.data.mkdir()
    server.start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    fs.configure()  # clients made from now on read these variables
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(Exception):
            fs.configure()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the session's server: ``s3://t-<random>``."""
    return s3_server.bucket()
