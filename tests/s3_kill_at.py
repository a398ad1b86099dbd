"""``mnist-batch`` as a user runs it, with the test's S3 server SIGKILLed at one phase of the run.

Run as ``python tests/s3_kill_at.py PHASE SERVER_PID PORT score ...``: the CLI's own entry point
(``mnist_batch.cli.entry_point``) in this process, with one addition: every boto3 client the process
makes (this package's and Beam's S3 filesystem's) passes each request by :func:`watch` first, and the
first request of ``PHASE`` kills the server (SIGKILL, then waits until its port refuses
connections) before it is sent. So the phase is hit exactly, whatever the machine's speed: no
sleeping, no polling. The request then goes to a dead port, as it would had the server died a
moment earlier, and the run goes on as it would.

Phases (the requests that mark them):

* ``model``: the first request for the model's files (``s3://BUCKET/models/...``), at launch;
* ``listing``: the job's paginated ``LIST`` of the input folder (not the one-key check before it);
* ``reading``: the first ``GET`` of an input image;
* ``writing``: the first shard's upload into the attempt's staging folder (the storage interface's client);
* ``fence``: the first ``GET`` of a lease once a shard is staged (the commit's fence check);
* ``commit``: the commit's first server-side copy (a shard moving in);
* ``heartbeat``: the first lease renewal (a ``PUT`` of the lease with ``If-Match``); the lease's
  ttl is made short here (``MNIST_BATCH_TEST_LEASE_TTL_S``, default 1 s: a beat every 0.25 s) so that it
  comes before a quick run ends (at 4 s, a 6-image run on a quiet fast host ended first).

``MNIST_BATCH_TEST_UNKNOWN_WAIT_S`` shortens the commit's wait for a lease it cannot read.
A line ``s3_kill_at: killed the server at PHASE (METHOD URL)`` goes to stderr first.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

PHASES = ("model", "listing", "reading", "writing", "fence", "commit", "heartbeat")


class Watch:
    def __init__(self, phase: str, pid: int, port: int) -> None:
        self.phase, self.pid, self.port = phase, pid, port
        self.staged = False  # a shard's upload under _staging/ was sent
        self.killed = False
        self.lock = threading.Lock()

    def matches(self, method: str, url: str, headers) -> bool:
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.unquote(parts.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if "/_staging/" in path and method in ("PUT", "POST") and "copy-source" not in str(headers).lower():
            self.staged = True
        if self.phase == "listing":
            prefix = query.get("prefix", [""])[0]
            return method == "GET" and "list-type" in query and "/scans/" in f"/{prefix}" and "max-keys" not in query
        if self.phase == "model":
            return method in ("GET", "HEAD") and "/models/" in path
        if self.phase == "reading":
            return method == "GET" and "/scans/" in path and not query
        if self.phase == "writing":
            copy = any(
                k.lower() == "x-amz-copy-source" for k in headers
            )  # a shard's upload: a PUT, or multipart's first POST
            return method in ("PUT", "POST") and "/_staging/" in path and path.endswith(".parquet") and not copy
        if self.phase == "fence":
            return method == "GET" and "/_claims/" in path and self.staged
        if self.phase == "commit":
            return method == "PUT" and any(k.lower() == "x-amz-copy-source" for k in headers)
        if self.phase == "heartbeat":
            return method == "PUT" and "/_claims/" in path and any(k.lower() == "if-match" for k in headers)
        raise ValueError(f"unknown phase {self.phase!r}; one of {', '.join(PHASES)}")

    def __call__(self, request, **_) -> None:
        with self.lock:
            if self.killed or not self.matches(request.method, request.url, request.headers):
                return
            self.killed = True
            os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) != 0:
                        break
                time.sleep(0.01)
            print(f"s3_kill_at: killed the server at {self.phase} ({request.method} {request.url})", file=sys.stderr)


def install(watch: Watch) -> None:
    """Every botocore client made from now on sends its requests past ``watch``."""
    import botocore.session

    create_client = botocore.session.Session.create_client

    def create_watched_client(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-send.s3", watch)
        return client

    botocore.session.Session.create_client = create_watched_client


def main() -> None:
    phase, pid, port, *argv = sys.argv[1:]
    install(Watch(phase, int(pid), int(port)))
    import mnist_batch.cli as cli  # imports neither Beam nor the run store

    configure_logging = cli.configure_logging

    def configure_then_shorten(verbosity) -> None:
        """The CLI's logging first (as its entry point does, before Beam is imported), then the lease
        settings: importing the run store imports Beam, whose first warning would otherwise install
        Python's default handler, unfiltered, beside the CLI's own."""
        configure_logging(verbosity)
        from mnist_batch.runstore import claims

        ttl = os.environ.get("MNIST_BATCH_TEST_LEASE_TTL_S", "1" if phase == "heartbeat" else "")
        if ttl:
            claims.LEASE_TTL_S = float(ttl)
        if "MNIST_BATCH_TEST_UNKNOWN_WAIT_S" in os.environ:
            claims.UNKNOWN_WAIT_S = float(os.environ["MNIST_BATCH_TEST_UNKNOWN_WAIT_S"])

    cli.configure_logging = configure_then_shorten
    sys.argv = ["mnist-batch", *argv]
    cli.entry_point()


if __name__ == "__main__":
    main()
