"""Conditional writes on S3 (and S3-compatible servers), through boto3: what Beam's filesystem lacks.

Beam's ``S3FileSystem`` uploads and deletes objects unconditionally. The run store's leases need
an atomic create and an atomic replace, which S3 offers as conditional requests:

* ``PUT`` with ``If-None-Match: *`` creates the object only if no object has that key
  (412 Precondition Failed otherwise): :func:`put_if_absent`;
* ``PUT`` with ``If-Match: <etag>`` replaces the object only if it is still that version:
  :func:`replace_if`; ``DELETE`` with ``If-Match`` deletes it only then: :func:`delete_if`.

Of two writers racing on one key, the server lets exactly one win. The client is made from the
same settings as Beam's S3 filesystem (``--s3_endpoint_url``, ``--s3_access_key_id``, ... or, unset,
boto3's usual ``AWS_*`` variables and files); see :func:`configure`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

SCHEME = "s3://"
OPTION_NAMES = {
    "s3_endpoint_url": "endpoint_url",
    "s3_access_key_id": "aws_access_key_id",
    "s3_secret_access_key": "aws_secret_access_key",
    "s3_session_token": "aws_session_token",
    "s3_region_name": "region_name",
    "s3_api_version": "api_version",
    "s3_verify": "verify",
}
"""Beam's S3 options -> boto3 client arguments (what Beam's own boto3 client passes)."""
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
"""The answers of a conditional request that lost: 412, or 409 when another conditional write to the key is under way."""

MAX_CONNECTIONS = 32
"""The client's HTTP connection pool: enough for the scoring step's overlapping reads (botocore's default is 10)."""

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
ATTEMPTS = 3
"""Every request of this package's client: a connection within 5 s, each read of the answer within
30 s, at most 3 attempts (botocore's "standard" retries: transient errors and throttling, backoff
with jitter). botocore's defaults (60 s each, 5 attempts "legacy") made a black-holed endpoint hang
a launch for minutes."""
CHECK_TIMEOUT_S = 5.0
CHECK_ATTEMPTS = 2
"""The bucket check before a launch (:func:`check_bucket`): 5 s to connect, 5 s for the answer, 2
attempts, so an endpoint that never answers fails the launch in about 20 s at most."""

_state: dict[str, Any] = {"kwargs": {}, "client": None, "check_client": None}
_lock = threading.Lock()


def is_s3(uri: str) -> bool:
    return uri.startswith(SCHEME)


def options_of(options: Any) -> dict[str, Any]:
    """Beam's S3 options that are set in ``options`` (Beam's ``PipelineOptions``, a dict, or None),
    e.g. ``{"s3_endpoint_url": ...}``: what a job's steps that reach S3 themselves carry to its workers."""
    if options is None:
        return {}
    values = options.get_all_options() if hasattr(options, "get_all_options") else dict(options)
    names = (*OPTION_NAMES, "s3_disable_ssl")
    return {name: values[name] for name in names if values.get(name) not in (None, False)}


def configure(options: dict[str, Any]) -> None:
    """Takes Beam's S3 options (``{"s3_endpoint_url": ..., ...}``; missing or None: boto3's defaults)."""
    kwargs = {arg: options[name] for name, arg in OPTION_NAMES.items() if options.get(name) is not None}
    if options.get("s3_disable_ssl"):
        kwargs["use_ssl"] = False
    with _lock:
        _state["kwargs"], _state["client"], _state["check_client"] = kwargs, None, None


def client(*, check: bool = False):
    """One boto3 S3 client per settings (boto3 clients are thread-safe; making one costs ~50 ms);
    ``check``: the one with the short timeouts of the bucket check (:data:`CHECK_TIMEOUT_S`)."""
    name = "check_client" if check else "client"
    with _lock:
        if _state[name] is None:
            import boto3  # the `aws` extra (apache-beam[aws]); only for s3:// roots
            from botocore.config import Config

            read, attempts = (CHECK_TIMEOUT_S, CHECK_ATTEMPTS) if check else (READ_TIMEOUT_S, ATTEMPTS)
            config = Config(
                max_pool_connections=MAX_CONNECTIONS,
                connect_timeout=CHECK_TIMEOUT_S if check else CONNECT_TIMEOUT_S,
                read_timeout=read,
                retries={"max_attempts": attempts, "mode": "standard"},
            )
            _state[name] = boto3.session.Session().client("s3", config=config, **_state["kwargs"])
        return _state[name]


def endpoint() -> str:
    """The endpoint this package's client talks to, for messages: the ``--s3_endpoint_url`` option,
    else ``AWS_ENDPOINT_URL``, else AWS's own."""
    import os

    return _state["kwargs"].get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or "AWS's default endpoint"


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    return bucket, key


def lost_race(exc: Exception) -> bool:
    """True when ``exc`` is a conditional request's refusal (the condition did not hold)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in PRECONDITION_CODES or status in PRECONDITION_CODES


BUCKET_REFUSALS = {
    "403": "access denied: wrong credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, --s3_access_key_id ...) "
    "or no permission on the bucket",
    "404": "no such bucket",
    "400": "the server refused the request (wrong region or endpoint?)",
}


CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "XAdminUserNotFound",
}
"""The error codes with which a server refuses the credentials themselves (not a permission);
``XAdminUserNotFound``: VersityGW's answer (HTTP 404) to an access key it does not know."""
CREDENTIALS_REFUSED = (
    "the server refused the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
    "(or --s3_access_key_id / --s3_secret_access_key)"
)


def error_code(exc: BaseException) -> tuple[str, str]:
    """``(HTTP status, error code)`` of a botocore error (the status again as the code when it has none)."""
    response = getattr(exc, "response", None) or {}
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return status, str(response.get("Error", {}).get("Code", status))


def check_bucket(uri: str) -> str | None:
    """Why the bucket of ``uri`` cannot be used (one line), or None when it answers ``HEAD`` with 200.

    A ``HEAD`` answer has no body, so its status is all it says (some servers answer a wrong key
    with 404 there); a refused ``HEAD`` is asked again as a ``LIST`` of one key, whose error code
    tells refused credentials (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``) from a missing
    bucket or a missing permission.
    """
    bucket, _ = split(uri)
    try:
        client(check=True).head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 -- botocore's errors, or none reached: all become the reason
        if getattr(exc, "response", None) is None:  # no answer at all: endpoint unreachable, no credentials found, ...
            return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        status, code = error_code(exc)
        try:
            client(check=True).list_objects_v2(Bucket=bucket, MaxKeys=1)
        except Exception as again:  # noqa: BLE001 -- the same refusal, now with its code
            if getattr(again, "response", None) is not None:
                status, code = error_code(again)
        said = f"HTTP {status}" if code == status else f"HTTP {status} {code}"
        if code in CREDENTIAL_CODES:
            return f"{CREDENTIALS_REFUSED} ({said} on bucket {bucket})"
        if code in ("NoSuchBucket", "NotFound", "404"):
            reason = "no such bucket"
        else:  # another code with a 404 is not "no such bucket": say what the server said
            reason = BUCKET_REFUSALS.get(status, "refused") if status != "404" else "refused"
        return f"{reason} ({said} on bucket {bucket})"
    return None


def put_if_absent(uri: str, data: bytes) -> str | None:
    """Creates ``uri`` unless an object has that key; its ETag, or None when it existed."""
    bucket, key = split(uri)
    try:
        return client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")["ETag"]
    except Exception as exc:
        if lost_race(exc):
            return None
        raise


def read_at_most(uri: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``uri``, in one ``GET`` (the caller checks whether there were more)."""
    bucket, key = split(uri)
    body = client().get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return body.read(limit)
    finally:
        body.close()


def read_tail(uri: str, size: int) -> tuple[bytes, int]:
    """The last ``size`` bytes of ``uri`` (all of it when shorter), in one ranged ``GET``, and the
    object's whole length."""
    bucket, key = split(uri)
    try:
        got = client().get_object(Bucket=bucket, Key=key, Range=f"bytes=-{size}")
    except Exception as exc:
        status = str((getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if status == "416":  # an empty object has no last bytes
            return b"", 0
        raise
    body = got["Body"].read()
    whole = got.get("ContentRange", "").rpartition("/")[2]
    return body, int(whole) if whole.isdigit() else len(body)


def read(uri: str) -> tuple[bytes, str] | None:
    """``(content, etag)`` of ``uri``; None when there is no such object."""
    bucket, key = split(uri)
    try:
        got = client().get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return got["Body"].read(), got["ETag"]


def replace_if(uri: str, data: bytes, etag: str) -> str | None:
    """Replaces ``uri`` only while it is version ``etag``; the new ETag, or None when it changed or went."""
    bucket, key = split(uri)
    try:
        return client().put_object(Bucket=bucket, Key=key, Body=data, IfMatch=etag)["ETag"]
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if lost_race(exc) or code in ("NoSuchKey", "404"):
            return None
        raise


def delete_if(uri: str, etag: str) -> bool:
    """Deletes ``uri`` only while it is version ``etag``; True when this call deleted it."""
    bucket, key = split(uri)
    try:
        client().delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if lost_race(exc) or code in ("NoSuchKey", "404"):
            return False
        raise
    return True


def not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


def exists(uri: str) -> bool:
    """Whether an object has the key of ``uri`` (one ``HEAD``)."""
    bucket, key = split(uri)
    try:
        client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if not_found(exc):
            return False
        raise
    return True


def list_keys(prefix_uri: str) -> list[str]:
    """The ``s3://`` URIs of every object whose key starts with ``prefix_uri``'s key, sorted."""
    bucket, prefix = split(prefix_uri)
    found = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(f"{SCHEME}{bucket}/{o['Key']}" for o in page.get("Contents", []))
    return sorted(found)


def list_objects(prefix_uri: str) -> Iterator[tuple[str, int, Any, str]]:
    """``(s3:// URI, size, LastModified, ETag without quotes)`` of every object under ``prefix_uri``'s
    key, in the server's (key) order, one paginated ``LIST`` through the shared client."""
    bucket, prefix = split(prefix_uri)
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield f"{SCHEME}{bucket}/{o['Key']}", int(o["Size"]), o["LastModified"], str(o.get("ETag", "")).strip('"')


def mtime_seconds(modified: Any) -> float:
    """An object's ``LastModified`` (a datetime) as the seconds Beam's S3 filesystem gives for it.

    The same arithmetic as Beam 2.70's (``S3IO``: local ``mktime`` corrected by ``time.timezone``), so
    that the keys of files an earlier run matched through Beam still match: the incremental key
    includes the mtime.
    """
    return time.mktime(modified.timetuple()) - time.timezone + modified.microsecond / 1_000_000.0


def any_key(prefix_uri: str) -> bool:
    """Whether an object's key starts with ``prefix_uri``'s key (one ``LIST`` asking for one key)."""
    bucket, prefix = split(prefix_uri)
    return bool(client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("Contents"))


def get(uri: str) -> bytes:
    bucket, key = split(uri)
    return client().get_object(Bucket=bucket, Key=key)["Body"].read()


def put(uri: str, data: bytes) -> None:
    """One ``PUT``: the object appears whole (any size, none too: Beam's multipart upload refuses 0 bytes)."""
    bucket, key = split(uri)
    client().put_object(Bucket=bucket, Key=key, Body=data)


def delete(uris: list[str]) -> None:
    """Deletes the objects (missing ones are no error), up to 1,000 per request."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, key = split(uri)
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for i in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[i : i + 1000]]
            answer = client().delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(
                    f"cannot delete s3://{bucket}/{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )


def copy(src: str, dst: str) -> None:
    """A server-side copy (one request; objects up to 5 GB, far over a shard's size)."""
    src_bucket, src_key = split(src)
    dst_bucket, dst_key = split(dst)
    client().copy_object(Bucket=dst_bucket, Key=dst_key, CopySource={"Bucket": src_bucket, "Key": src_key})
