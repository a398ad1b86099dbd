"""One storage interface for every place the package reads or writes: local disk, S3, other Beam filesystems.

:func:`storage_for` decides once per URL scheme which :class:`Storage` serves a path; the run store
(:mod:`~mnist_batch.runstore.fs`, leases, shards), the input listing and the image reads all go
through it, and nothing outside this package branches on the kind of store:

* :class:`~mnist_batch.runstore.local.LocalStorage`: plain paths and ``file://`` URIs, through
  :mod:`os` (atomic ``rename``, ``renameat2`` swaps, hard-linked exclusive creates);
* :class:`~mnist_batch.runstore.s3store.S3Storage`: ``s3://``, one boto3 client per process with
  bounded timeouts, conditional writes (``If-None-Match`` / ``If-Match``) for leases;
* :class:`~mnist_batch.runstore.beamfs.BeamStorage`: any other scheme Beam knows (``gs://`` ...),
  through ``FileSystems`` with every path escaped (a user's path is never a glob).

Settings: :func:`configure` takes the launch's Beam options once per process (the ``--s3_*``
options); a process that gives none (``runs``, ``monitor``, ``report``, a job's worker before its
step's ``setup``) uses the environment (``AWS_*``). A job's steps that reach storage themselves get
the launch's settings through one mechanism: :class:`mnist_batch.scoring.storage_fn.StorageDoFn`.
"""

from __future__ import annotations

import threading
from typing import Any

from mnist_batch.files import LOCAL_SCHEME, is_remote
from mnist_batch.runstore.store import Storage

_lock = threading.Lock()
_settings: dict[str, Any] = {"options": None}
_stores: dict[str, Storage] = {}


def scheme(uri: str) -> str:
    """``s3``, ``gs`` ...; ``""`` for a local path or a ``file://`` URI."""
    return uri.split("://", 1)[0] if is_remote(uri) else ""


def storage_for(uri: str) -> Storage:
    """The :class:`Storage` that serves ``uri``, made once per scheme and process."""
    name = scheme(uri)
    store = _stores.get(name)
    if store is None:
        with _lock:
            store = _stores.get(name) or _make(name)
            _stores[name] = store
    return store


def _make(name: str) -> Storage:
    if not name:
        from mnist_batch.runstore.local import LocalStorage

        return LocalStorage()
    if name == "s3":
        from mnist_batch.runstore.s3store import S3Storage

        return S3Storage(_settings["options"] or {})
    from mnist_batch.runstore.beamfs import BeamStorage

    return BeamStorage(_settings["options"])


def configure(options: Any = None) -> None:
    """The settings every store is opened with, in this process: Beam's ``PipelineOptions`` (its
    ``--s3_*``, ``--project`` ... options), a dict of them, or None (the environment: ``AWS_*``).

    Stores made before are dropped, so the next use opens them with these settings.
    """
    values = options.get_all_options() if hasattr(options, "get_all_options") else dict(options or {})
    with _lock:
        _settings["options"] = values
        _settings["launcher"] = True  # Beam's filesystems are given these options below, in this process
        _stores.clear()
    from mnist_batch.runstore import s3  # boto3 itself only when a client is made

    s3.forget()  # an explicit configure reads the environment again
    from apache_beam.io.filesystems import FileSystems  # Beam's own filesystems (gs://, Beam's s3:// reads)

    # Not an empty dict: Beam takes a falsy one for "no options", and its S3 filesystem then opens
    # no client at all. A False flag is what no option means to every filesystem (GCS drops it).
    FileSystems.set_options(options or {"s3_disable_ssl": False})


def configure_worker(settings: dict[str, Any] | None) -> None:
    """On a job's worker (a step's ``setup``): the launch's storage settings (:func:`settings_of`), or,
    none given and none set yet, the worker's environment.

    A worker process that no launch configured (a portable runner's SDK harness, started by a worker
    pool, which does not hand the job's options to Beam's filesystems) gives them to Beam's
    filesystems too: the settings, or, none given, none (each filesystem reads the environment),
    never nothing (Beam's S3 filesystem then refuses every call: "Must provide one of client or options").
    """
    with _lock:
        first = not _settings.get("launcher") and not _settings.get("worker")
        _settings["worker"] = True
    if first:
        from apache_beam.io.filesystems import FileSystems

        FileSystems.set_options(dict(settings or {}) or {"s3_disable_ssl": False})
    if settings:
        with _lock:
            if settings_of(_settings["options"]) != settings_of(settings):  # the launch's own process: set already
                _settings["options"] = dict(settings)
                _stores.clear()


S3_OPTIONS = (
    "s3_endpoint_url",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_session_token",
    "s3_region_name",
    "s3_api_version",
    "s3_verify",
    "s3_disable_ssl",
)


def settings_of(options: Any) -> dict[str, Any]:
    """The storage settings set in ``options`` (Beam's ``PipelineOptions``, a dict, or None), e.g.
    ``{"s3_endpoint_url": ...}``: what a job's steps that reach storage carry to its workers."""
    if options is None:
        return {}
    values = options.get_all_options() if hasattr(options, "get_all_options") else dict(options)
    return {name: values[name] for name in S3_OPTIONS if values.get(name) not in (None, False)}


__all__ = ["LOCAL_SCHEME", "Storage", "configure", "configure_worker", "settings_of", "storage_for"]
