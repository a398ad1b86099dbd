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


STORAGE_MODULES = ("botocore", "boto3", "s3transfer", "urllib3", "apache_beam.io")
"""Where the exceptions of a failing store come from (besides ``OSError`` and its kin)."""


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a store's failure (not a bug of this package, not the user's input)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(STORAGE_MODULES)


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def endpoint_of(exc: BaseException) -> str:
    """``" (endpoint URL)"`` for an S3 client's failure whose message does not name it, else ``""``."""
    if not type(exc).__module__.startswith(("botocore", "boto3", "s3transfer")) or "endpoint" in str(exc).lower():
        return ""
    from mnist_batch.runstore import s3  # late: s3 is not needed to raise the errors above

    return f" (endpoint {s3.endpoint()})"


@contextlib.contextmanager
def storage_step(what: str) -> Iterator[None]:
    """Turns a store's failure inside the block into :class:`StorageError` ``"<what>: the storage
    failed (endpoint ...): Type: message"``; this package's own errors and bugs pass unchanged."""
    try:
        yield
    except MnistBatchError:
        raise
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise StorageError(f"{what}: the storage failed{endpoint_of(exc)}: {describe(exc)}") from exc
