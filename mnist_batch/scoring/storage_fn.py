"""How a job's steps that reach storage themselves get the launch's storage settings: one mechanism.

Beam hands every worker the job's options, but the package's own stores (S3's conditional writes,
its bounded client) are opened by the package: a step that reads or writes through
:mod:`mnist_batch.runstore` subclasses :class:`StorageDoFn`, which carries the settings of the
pipeline it was built in (:func:`storage_settings`: its ``--s3_*`` options) and applies them in
``setup`` on whichever worker runs it, after checking that the worker runs the launcher's version
of the package (:func:`check_worker_version`). ``tests/test_layering.py`` checks that every scoring step that
uses the run store's files is one.
"""

from __future__ import annotations

import re
from typing import Any

import apache_beam as beam

import mnist_batch
from mnist_batch.runstore import storage
from mnist_batch.runstore.beam_s3 import bound_beam_client
from mnist_batch.scoring.errors import ScoringError


class WorkerVersionError(ScoringError):
    """A worker runs another version of the package than the launcher that built the job."""


VERSION_RE = re.compile(
    r"WorkerVersionError: (?P<message>the workers run mnist-batch \S+ but the launcher [^\n\[\]]*?)(?: \[|\n|$)"
)
"""The one-line message of a :class:`WorkerVersionError`, in a runner's relayed worker traceback."""


def check_worker_version(launcher: str) -> None:
    """Raises :class:`WorkerVersionError` when this worker's installed package is not ``launcher``'s version.

    A worker image built from another release would score with other preprocessing or other
    columns than the launcher checked and will commit; it is stopped at its first step's setup.
    """
    installed = mnist_batch.__version__
    if installed != launcher:
        raise WorkerVersionError(
            f"the workers run mnist-batch {installed} but the launcher {launcher}: install mnist-batch "
            f'{launcher} on the workers (their image; deploy/README.md, "Flink"); nothing was committed'
        )


def storage_settings(pipeline_or_pcoll: Any) -> dict[str, Any]:
    """The storage settings (``{"s3_endpoint_url": ...}``) of the pipeline a composite is applied in."""
    pipeline = getattr(pipeline_or_pcoll, "pipeline", pipeline_or_pcoll)
    return storage.settings_of(getattr(pipeline, "options", None))


class StorageDoFn(beam.DoFn):
    """A step that reaches storage itself; subclasses that define ``setup`` call ``super().setup()``.

    Args:
      settings: :func:`storage_settings` of the pipeline (None or empty: the worker's environment).
    """

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._storage_settings = dict(settings or {})
        self._launcher_version = mnist_batch.__version__  # pickled with the step: the launcher's

    def setup(self) -> None:
        check_worker_version(self._launcher_version)
        storage.configure_worker(self._storage_settings)
        bound_beam_client()  # what still goes through Beam's S3 filesystem (glob matches) is bounded too
