"""The one storage interface: chosen once per scheme, the only place that knows which store a path is on.

The behaviour of each store is tested where it is used (the run store, leases, shards, reads: on disk
here, against a real S3 server in the ``s3`` tier: ``tests/test_s3_storage.py``); this file checks the
choice itself and the rules that keep the house one: no boto3 and no "is this S3?" outside
``mnist_batch/runstore``, and every scoring step that touches storage carries the launch's settings.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil

import apache_beam as beam
import pytest

import mnist_batch
from mnist_batch.runstore import fs, storage
from mnist_batch.runstore.beamfs import BeamStorage
from mnist_batch.runstore.local import LocalStorage
from mnist_batch.scoring.storage_fn import StorageDoFn

PACKAGE = pathlib.Path(mnist_batch.__file__).parent
STORAGE_PACKAGE = PACKAGE / "runstore"


def package_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_each_scheme_is_served_by_one_store_made_once():
    local = storage.storage_for("/tmp/x")
    assert isinstance(local, LocalStorage)
    assert storage.storage_for("file:///tmp/y") is local  # a file:// URI is the local disk
    assert storage.storage_for("relative/path") is local
    assert storage.storage_for("s3://bucket/k").conditional  # S3: versioned conditional writes, for leases
    assert storage.storage_for("s3://other/k") is storage.storage_for("s3://bucket/k")
    assert isinstance(storage.storage_for("gs://b/k"), BeamStorage)
    assert not local.conditional and not local.remote


def test_configure_gives_the_settings_to_stores_made_afterwards():
    before = storage.storage_for("s3://b/k")
    try:
        launch = {"s3_endpoint_url": "http://127.0.0.1:9", "s3_region_name": "eu-west-3", "runner": "DirectRunner"}
        storage.configure(launch)
        after = storage.storage_for("s3://b/k")
        assert after is not before
        assert "http://127.0.0.1:9" in after.describe()
        assert storage.settings_of({"s3_endpoint_url": "u", "runner": "DirectRunner", "s3_verify": None}) == {
            "s3_endpoint_url": "u"
        }
        storage.configure_worker(storage.settings_of(launch))
        assert storage.storage_for("s3://b/k") is after  # the launch's own process: nothing to redo
    finally:
        storage.configure()


def test_the_local_store_round_trips_every_operation(tmp_path):
    store = storage.storage_for(str(tmp_path))
    uri = f"file://{tmp_path}/a [1]/b.json"  # glob characters and a file:// URI: taken literally
    assert store.create_exclusive(uri, b"one") and not store.create_exclusive(uri, b"two")
    assert store.read_bytes(uri) == b"one" and fs.read_text(uri) == "one"
    store.write_atomic(uri, b"0123456789")
    assert store.read_tail(uri, 4) == (b"6789", 10) and store.read_tail(uri, 99) == (b"0123456789", 10)
    assert store.read_at_most(uri, 3) == b"012"
    with store.open_write(f"{tmp_path}/deep/er/c.bin") as f:
        f.write(b"xyz")
    assert store.list_dir(str(tmp_path)) == ["a [1]", "deep"]
    assert store.list_files(f"file://{tmp_path}") == [
        f"file://{tmp_path}/a [1]/b.json",
        f"file://{tmp_path}/deep/er/c.bin",
    ]
    assert store.any_under(str(tmp_path / "deep")) and not store.any_under(str(tmp_path / "none"))
    store.rename(uri, f"{tmp_path}/moved/b.json")
    assert not store.exists(uri) and store.exists(f"{tmp_path}/moved/b.json")
    assert store.missing(uri, FileNotFoundError()) and not store.missing(uri, OSError("EIO"))
    store.delete_tree(str(tmp_path / "deep"))
    assert store.list_dir(str(tmp_path)) == ["a [1]", "moved"]
    with pytest.raises(NotImplementedError, match="no conditional requests"):
        store.replace_if(uri, b"", "v1")


def imports_of(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_module_outside_the_storage_package_talks_to_s3_itself():
    """boto3, the S3 module and "is this S3?" tests live in ``mnist_batch/runstore`` only."""
    offenders = []
    for path in package_files():
        if STORAGE_PACKAGE in path.parents:
            continue
        rel = path.relative_to(PACKAGE)
        for name in imports_of(path):
            if name.split(".")[0] in ("boto3", "botocore") or name.startswith("mnist_batch.runstore.s3"):
                offenders.append(f"{rel}: imports {name}")
        text = path.read_text(encoding="utf-8")
        for needle in ('startswith("s3://")', "startswith('s3://')", "is_s3(", "s3store"):
            if needle in text:
                offenders.append(f"{rel}: {needle}")
    assert offenders == []


STORAGE_CALLS = (
    "fs.",
    "storage_for(",
    "ShardWriter(",
    "ShardBuffer(",
    "commit_run(",
    "commit_attempt(",
    "known_digests(",
    "read_bytes(",
)
"""What in a step's source means it reaches storage itself."""


def scoring_dofns():
    import mnist_batch.scoring as scoring

    for info in pkgutil.iter_modules(scoring.__path__):
        module = importlib.import_module(f"mnist_batch.scoring.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, beam.DoFn) and cls.__module__ == module.__name__:
                yield cls


def test_every_scoring_step_that_touches_storage_carries_the_launch_settings():
    """A step that reaches storage but is not a ``StorageDoFn`` would read the worker's environment,
    not the ``--s3_*`` options the user gave: on a cluster, the wrong endpoint or no credentials."""
    steps = list(scoring_dofns())
    assert len(steps) > 10
    touching = [cls for cls in steps if any(call in inspect.getsource(cls) for call in STORAGE_CALLS)]
    assert {cls.__name__ for cls in touching} >= {"WriteShardsFn", "CommitRunFn", "ListS3FolderFn"}
    assert [cls.__name__ for cls in touching if not issubclass(cls, StorageDoFn)] == []
    for cls in touching:  # a setup of its own must still apply the settings
        if "setup" in cls.__dict__:
            assert "super().setup()" in inspect.getsource(cls.setup), cls.__name__
