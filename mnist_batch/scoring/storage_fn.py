"""How a job's steps that reach storage themselves get the launch's storage settings: one mechanism.

Beam hands every worker the job's options, but the package's own stores (S3's conditional writes,
its bounded client) are opened by the package: a step that reads or writes through
:mod:`mnist_batch.runstore` subclasses :class:`StorageDoFn`, which carries the settings of the
pipeline it was built in (:func:`storage_settings`: its ``--s3_*`` options) and applies them in
``setup`` on whichever worker runs it. ``tests/test_layering.py`` checks that every scoring step that
uses the run store's files is one.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from mnist_batch.runstore import storage


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

    def setup(self) -> None:
        storage.configure_worker(self._storage_settings)
