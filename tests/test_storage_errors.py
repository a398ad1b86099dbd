"""Which failures of an object store fail a run (the store is away) and which stay one file's error
row (something about that object), and which steps say that nothing was committed (issue 33)."""

from __future__ import annotations

import pytest

botocore = pytest.importorskip("botocore", reason="boto3 comes with the aws extra")

from botocore.exceptions import (  # noqa: E402
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from mnist_batch.runstore.errors import (  # noqa: E402
    StorageError,
    UncommittedStorageError,
    before_commit,
    storage_step,
    store_unreachable,
)

URL = "http://127.0.0.1:9000/b/scans/0.png"


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (EndpointConnectionError(endpoint_url=URL), True),  # refused: the server is down
        (ConnectTimeoutError(endpoint_url=URL), True),  # a black hole
        (ReadTimeoutError(endpoint_url=URL), True),  # an endpoint that never answers
        (ConnectionClosedError(endpoint_url=URL), True),  # dropped mid-answer
        (client_error(503, "SlowDown"), True),  # 5xx, after the client's own tries
        (client_error(500, "InternalError"), True),
        (client_error(404, "NoSuchKey"), False),  # deleted since the listing: that file's error
        (client_error(403, "AccessDenied"), False),  # that object refused: that file's error
        (FileNotFoundError(2, "No such file"), False),  # local files: always the file's own error
        (PermissionError(13, "Permission denied"), False),
    ],
)
def test_only_a_store_that_is_away_is_unreachable(exc, unreachable):
    assert store_unreachable(exc) is unreachable


def test_beam_s_s3_errors_are_read_by_their_status():
    from apache_beam.io.aws.clients.s3.messages import S3ClientError

    assert store_unreachable(S3ClientError(f'Could not connect to the endpoint URL: "{URL}"', None))
    assert store_unreachable(S3ClientError("Internal error", 500))
    assert not store_unreachable(S3ClientError("Not found", 404))


def test_a_step_before_the_commit_says_so_through_beam_s_reraise():
    with (
        pytest.raises(UncommittedStorageError) as caught,
        storage_step("writing shards into s3://b/x", before_commit=True),
    ):
        raise EndpointConnectionError(endpoint_url=URL)
    assert str(caught.value).startswith("writing shards into s3://b/x: the storage failed: EndpointConnectionError:")
    assert "127.0.0.1:9000" in str(caught.value)  # the endpoint, in the failed request's URL
    # Beam raises a DoFn's error again as a new instance of its class (its step's name appended),
    # and the job's failure has it as its context.
    again = type(caught.value)(caught.value.args[0] + " [while running 'WriteShards']")
    job_failed = RuntimeError("the job failed")
    job_failed.__context__ = again
    assert before_commit(job_failed) and not before_commit(RuntimeError("the job failed"))
    with pytest.raises(StorageError) as commit, storage_step("commit run r1 into s3://b/runs"):
        raise EndpointConnectionError(endpoint_url=URL)
    assert not before_commit(commit.value)  # the commit's own step: whether a journal exists is asked
