"""Helpers of the cluster tests (``make test-cluster``: the cluster of ``make cluster-up`` and the bucket of
``make s3-up``; the worker hosts share nothing with this process, so everything goes through the bucket).

Not a ``conftest.py``: the main suite's modules import ``conftest`` by name (tests/conftest.py), and
a second one here would shadow it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "deploy" / "flink" / "cluster.sh"
S3_SH = REPO / "deploy" / "s3" / "server.sh"
BUCKET = "mnist-batch"
sys.path.insert(0, str(REPO / "tests"))


def s3_env() -> dict[str, str]:
    """The ``AWS_*`` variables of ``make s3-up``'s server (``server.sh env``): this process's and the hosts'."""
    out = subprocess.run([str(S3_SH), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))


def env() -> dict[str, str]:
    return dict(os.environ, **s3_env(), TF_CPP_MIN_LOG_LEVEL="3", MNIST_BATCH_PROGRESS_S="1")


def new_prefix(name: str) -> str:
    """A fresh folder of the bucket: ``s3://mnist-batch/cluster/<name>-<random>``."""
    return f"s3://{BUCKET}/cluster/{name}-{uuid.uuid4().hex[:8]}"


def client():
    import boto3

    return boto3.session.Session().client("s3", **{"endpoint_url": s3_env()["AWS_ENDPOINT_URL"]})


def key_of(uri: str) -> str:
    return uri.removeprefix(f"s3://{BUCKET}/")


def upload_folder(source: pathlib.Path, target: str, count: int, start: int = 0) -> list[str]:
    """``count`` of the exported PNG files as ``target/<label>/<i>.png`` objects (numbered from ``start``)."""
    files = sorted(source.glob("*/*.png"))
    jobs = [
        (files[i % len(files)], f"{target}/{files[i % len(files)].parent.name}/{i:07d}.png")
        for i in range(start, start + count)
    ]
    s3 = client()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda job: s3.put_object(Bucket=BUCKET, Key=key_of(job[1]), Body=job[0].read_bytes()), jobs))
    return [uri for _, uri in jobs]


def put(uri: str, data: bytes) -> None:
    client().put_object(Bucket=BUCKET, Key=key_of(uri), Body=data)
