"""The run store's own error: a run cannot be claimed, committed, read or placed (one line, exit 2)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mnist_batch.errors import MnistBatchError


class RunStoreError(MnistBatchError, ValueError):
    """A run store refuses an operation: bad run id, output of the other layout, live lease, lost shard, ..."""


class StorageError(RunStoreError):
    """The storage failed under a named step (an unreachable endpoint, a timeout, a refused request,
    a full disk): one line naming the step, the endpoint where there is one, and the failure."""


class UncommittedStorageError(StorageError):
    """:class:`StorageError` in a step of the job before its commit (listing the input, reading the
    images, writing shards into staging): the commit never started, so nothing of the run was moved
    in, whatever the store says afterwards. (Beam raises a DoFn's error again as a new instance of
    its class, so the class, not an attribute, carries this.)"""


STORAGE_MODULES = ("botocore", "boto3", "s3transfer", "urllib3", "apache_beam.io")
"""Where the exceptions of a failing store come from (besides ``OSError`` and its kin)."""


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a store's failure (not a bug of this package, not the user's input)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(STORAGE_MODULES)


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    beam_s3_error = type(exc).__module__.startswith("apache_beam.io.aws") and exc.args  # (message, HTTP status)
    text = " ".join(str(exc.args[0] if beam_s3_error else exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def root_cause(exc: BaseException) -> BaseException:
    """The error inside Beam's ``BeamIOError`` (its ``exception_details``: ``{path: error}``, nested
    for a match: "Match operation failed with exceptions {...: BeamIOError('List operation ...')}"),
    the first one's, at the bottom; ``exc`` itself for any other error."""
    seen = set()
    while type(exc).__name__ == "BeamIOError" and id(exc) not in seen:
        seen.add(id(exc))
        details = getattr(exc, "exception_details", None)
        if not isinstance(details, dict) or not details:
            break
        exc = next(iter(details.values()))
    return exc


def endpoint_of(exc: BaseException) -> str:
    """``" (endpoint URL)"`` for an S3 client's failure whose message does not name it, else ``""``."""
    if not type(exc).__module__.startswith(("botocore", "boto3", "s3transfer")) or "endpoint" in str(exc).lower():
        return ""
    from mnist_batch.runstore import s3  # late: s3 is not needed to raise the errors above

    return f" (endpoint {s3.endpoint()})"


def storage_failure(what: str, exc: BaseException, *, before_commit: bool = False) -> StorageError:
    """``"<what>: the storage failed (endpoint ...): Type: message"`` (before_commit:
    :class:`UncommittedStorageError`)."""
    kind = UncommittedStorageError if before_commit else StorageError
    return kind(f"{what}: the storage failed{endpoint_of(exc)}: {describe(exc)}")


@contextlib.contextmanager
def storage_step(what: str, *, before_commit: bool = False) -> Iterator[None]:
    """Turns a store's failure inside the block into :class:`StorageError` ``"<what>: the storage
    failed (endpoint ...): Type: message"``; this package's own errors and bugs pass unchanged.

    Args:
      what: the step, as the line names it (``writing shards into s3://b/runs/_staging/...``).
      before_commit: a step of the job before its commit (:class:`UncommittedStorageError`).
    """
    try:
        yield
    except MnistBatchError:
        raise
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise storage_failure(what, exc, before_commit=before_commit) from exc


def store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says that an object store could not be reached or did not answer (no
    connection, a timeout, a dropped connection, a 5xx after the client's retries; or no credentials
    at all), rather than something about one object (not found, access denied): the store failed,
    not the file.

    An input image whose read fails so fails the run (one line naming the endpoint) instead of
    becoming one error row per file, which would commit a run of errors for a server that was away.
    """
    module = type(exc).__module__
    if module.startswith("urllib3"):  # the HTTP layer under a client: no answer came
        return True
    if module.startswith("botocore"):
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, NoCredentialsError

        if isinstance(exc, (ConnectionError, HTTPClientError, NoCredentialsError)):  # refused, timed out, dropped
            return True
        if isinstance(exc, ClientError):
            status = (exc.response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            return isinstance(status, int) and status >= 500
        return False
    if module.startswith("apache_beam.io.aws"):  # Beam's S3ClientError: (message, HTTP status or None)
        code = getattr(exc, "code", None)
        return code is None or (isinstance(code, int) and code >= 500)
    return False


def before_commit(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is an :class:`UncommittedStorageError`."""
    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, UncommittedStorageError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False
