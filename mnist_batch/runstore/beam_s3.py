"""Beam's own S3 filesystem (``apache_beam.io.aws``) with the bounds of this package's S3 client.

The shards of a run are uploaded through Beam's S3 filesystem (``FileSystems.create``), whose boto3
client Beam makes without any ``botocore.config.Config``: botocore's defaults, 60 s to connect,
60 s per read, 5 attempts ("legacy" retries), so an endpoint that stopped answering held a shard's
upload for minutes. :func:`bound_beam_client` makes every client Beam's filesystem creates from then
on in this process use the settings of :func:`mnist_batch.runstore.s3.client`: 5 s to connect, 30 s
per read, 3 attempts in botocore's "standard" mode (:data:`~mnist_batch.runstore.s3.CONNECT_TIMEOUT_S`,
...). The endpoint, credentials and other ``--s3_*`` options are Beam's, as before.

It is called by :func:`mnist_batch.runstore.s3.configure`, which every process that reaches S3
calls first (the launcher, and each worker's steps that reach S3 in their ``setup``).

What it does not bound: Beam's ``S3IO`` retries some operations itself (listing a glob pattern,
an object's metadata and ranged reads, e.g. a model file on S3; copies and deletes), seven more
times with a backoff from 5 s doubling; a run's S3 folder inputs, image reads, shard uploads,
commit and leases do not go through those.
"""

from __future__ import annotations

import types

from mnist_batch.runstore import s3

_bounded = {"done": False}


def client_config():
    """The ``botocore.config.Config`` of this package's own client (:func:`mnist_batch.runstore.s3.client`)."""
    from botocore.config import Config

    return Config(
        max_pool_connections=s3.MAX_CONNECTIONS,
        connect_timeout=s3.CONNECT_TIMEOUT_S,
        read_timeout=s3.READ_TIMEOUT_S,
        retries={"max_attempts": s3.ATTEMPTS, "mode": "standard"},
    )


def bound_beam_client() -> None:
    """Every S3 client Beam's filesystem makes from now on, in this process, has :func:`client_config`
    (idempotent; nothing to do where Beam's AWS extra is not installed)."""
    if _bounded["done"]:
        return
    try:
        import boto3
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # no `aws` extra: no S3 anywhere
        return
    if boto3_client.boto3 is None:
        return

    class BoundedSession(boto3.session.Session):
        """boto3's session whose S3 clients get :func:`client_config` unless given a config."""

        def client(self, *args, **kwargs):
            if kwargs.get("config") is None:
                kwargs["config"] = client_config()
            return super().client(*args, **kwargs)

    # Beam's client calls ``boto3.session.Session().client(service_name="s3", ...)`` through its
    # module's ``boto3`` name, and takes no config of its own: that name is given bounded sessions.
    boto3_client.boto3 = types.SimpleNamespace(session=types.SimpleNamespace(Session=BoundedSession))
    _bounded["done"] = True
