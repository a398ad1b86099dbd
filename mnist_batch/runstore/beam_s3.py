"""Beam's own S3 filesystem (``apache_beam.io.aws``) with the bounds of this package's S3 client.

The shards of a run are uploaded through Beam's S3 filesystem (``FileSystems.create``), whose boto3
client Beam makes without any ``botocore.config.Config``: botocore's defaults, 60 s to connect,
60 s per read, 5 attempts ("legacy" retries), so an endpoint that stopped answering held a shard's
upload for minutes. :func:`bound_beam_client` makes every client Beam's filesystem creates from then
on in this process use the settings of :func:`mnist_batch.runstore.s3.client`: 5 s to connect, 30 s
per read, 3 attempts in botocore's "standard" mode (:data:`~mnist_batch.runstore.s3.CONNECT_TIMEOUT_S`,
...). The endpoint, credentials and other ``--s3_*`` options are Beam's, as before.

Beam's ``S3IO`` also retries some requests itself, on top of the client's tries: the listing of a
pattern (an ``s3://`` glob input), an object's metadata and ranged reads (a model file, an
``@LIST`` file on S3), copies and deletes, seven more times, waiting 5 s, 10 s, ... 320 s between
(a refused connection held a glob's match for minutes). Those are retried :data:`BEAM_RETRIES`
more times from :data:`BEAM_RETRY_DELAY_S` instead, their retry messages logged at INFO (shown with
``--verbose``), not as warnings with a traceback.

It lives in the scoring layer, which may reach into Beam (the run store reaches Beam only through
``apache_beam.io.filesystems``), and is called, once per process, where Beam's S3 filesystem may be
used: the launch (:func:`mnist_batch.scoring.launch.start`), and on the workers the ``setup`` of the
steps that upload shards (:class:`~mnist_batch.scoring.sinks.WriteShardsFn`,
:class:`~mnist_batch.scoring.commit_step.CommitRunFn`), load the model
(:class:`~mnist_batch.scoring.handler.DigitModelHandler`) or follow a match
(:class:`~mnist_batch.scoring.matching.ClassifyMatchFn`, the step after Beam's ``MatchAll``).
"""

from __future__ import annotations

import functools
import logging
import types

from mnist_batch.runstore import s3

BEAM_RETRIES = 2
BEAM_RETRY_DELAY_S = 1.0
"""Beam's own retries of an S3 request that its (bounded) client gave up on: 2 more, after ~1 s and
~2 s (fuzzed), where Beam's defaults are 7 more from 5 s doubling (over 10 minutes of waiting)."""

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
    # Beam reads the HTTP status of a failed request as ``exc.response.get(...)``; a read timeout's
    # ``response`` is None, so the timeout became "AttributeError: 'NoneType' object has no attribute
    # 'get'" (a bug's error, not the store's): read as "no status", like any error without an answer.
    boto3_client.get_http_error_code = http_status
    bound_beam_retries()
    _bounded["done"] = True


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request (None when no answer came: refused, timed out, dropped)."""
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def bound_beam_retries() -> None:
    """Beam's ``S3IO`` retries (``apache_beam.utils.retry.with_exponential_backoff``) made
    :data:`BEAM_RETRIES` from :data:`BEAM_RETRY_DELAY_S`, each with the filter Beam gave it."""
    import apache_beam.utils.retry as retry
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import boto3_client

    quiet = logging.getLogger("apache_beam.utils.retry").info
    bounded = functools.partial(
        retry.with_exponential_backoff, num_retries=BEAM_RETRIES, initial_delay_secs=BEAM_RETRY_DELAY_S, logger=quiet
    )
    # Decorated when Beam's classes were defined: decorated again, from the functions they wrap.
    timeouts = retry.retry_on_server_errors_and_timeout_filter
    for owner, name, retry_filter in (
        (s3io.S3IO, "copy", timeouts),
        (s3io.S3IO, "delete", timeouts),
        (s3io.S3IO, "_delete_minibatch", timeouts),
        (s3io.S3IO, "_s3_object", timeouts),
        (s3io.S3Downloader, "_get_object_metadata", timeouts),
        (boto3_client.Client, "get_range", retry.retry_on_server_errors_filter),
    ):
        original = getattr(getattr(owner, name), "__wrapped__", None)
        if original is not None:  # another Beam version may not have it: left as it is
            setattr(owner, name, bounded(retry_filter=retry_filter)(original))
    # Decorated at each call (the listing of a pattern): the module's ``retry`` name, bounded.
    names = {n: getattr(retry, n) for n in dir(retry) if not n.startswith("__")}
    s3io.retry = types.SimpleNamespace(**{**names, "with_exponential_backoff": bounded})
