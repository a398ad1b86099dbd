"""``ScoreDigits``: this package's scoring as one Beam composite, for a user's own pipeline.

    paths | ScoreDigits("models/cnn.keras")          # PCollection[str] of image files
    keyed | ScoreDigits("models/cnn.keras")          # or PCollection[(key, bytes)]
    -> {"predictions": dict rows, "errors": dict rows}

The rows have the predictions and errors tables' columns (:data:`mnist_batch.tables.PREDICTIONS_SCHEMA`,
:data:`~mnist_batch.tables.ERRORS_SCHEMA`), so ``WriteToParquet(schema=...)``, BigQuery or any sink
takes them as they are. The model is checked against its card when the transform is built (as the
CLI's launcher does), and each worker loads only bytes with the checked sha256 (RunInference with
:class:`~mnist_batch.scoring.handler.DigitModelHandler`). A file that cannot be read, decoded or
normalised is an error row, never a lost element. Unlike ``mnist-batch score`` there is no run store:
nothing is committed, listed or skipped; what the user's pipeline feeds in is what is scored.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from mnist_batch.constants import AUTO_RUNTIME, DEFAULT_MAX_PIXELS
from mnist_batch.files import DEFAULT_MAX_FILE_BYTES, is_remote
from mnist_batch.review import check_review_threshold, review_threshold_for
from mnist_batch.runstore import fs
from mnist_batch.scoring.decode_pool import decode_file
from mnist_batch.scoring.handler import DigitModelHandler
from mnist_batch.scoring.storage_fn import StorageDoFn, storage_settings
from mnist_batch.tables import ERRORS_SCHEMA, prediction_columns
from mnist_batch.trust import threshold_for

PREDICTIONS = "predictions"
ERRORS = "errors"


def to_source(element: Any) -> tuple[str, bytes | None]:
    """A path (``str``) -> ``(path, None)`` (read later); ``(key, bytes)`` -> ``(str(key), bytes)``."""
    if isinstance(element, str):
        return element, None
    key, data = element
    return str(key), bytes(data)


class DecodeDigitFn(StorageDoFn):
    """``(key, bytes | None)`` -> ``(key, (uint8 [28, 28], blank))``; ``errors``: an errors-table row.

    A local path is read as scoring reads it (regular files only, at most ``max_bytes``); a remote one
    through the run store's storage interface, at most ``max_bytes``."""

    def __init__(
        self, max_bytes: int, max_pixels: int, run_id: str, model_id: str, settings: dict[str, Any] | None = None
    ) -> None:
        super().__init__(settings)
        self._max_bytes, self._max_pixels = max_bytes, max_pixels
        self._run_id, self._model_id = run_id, model_id

    def process(self, source: tuple[str, bytes | None]) -> Iterator[Any]:
        key, data = source
        if data is None and is_remote(key):
            try:
                data = fs.read_at_most(key, self._max_bytes)
            except Exception as exc:  # noqa: BLE001 -- an unreadable file is an error row
                yield beam.pvalue.TaggedOutput(ERRORS, self._error(key, "read", exc))
                return
        result = decode_file((key, data), self._max_bytes, self._max_pixels)
        if isinstance(result, tuple):
            yield beam.pvalue.TaggedOutput(ERRORS, self._error(key, *result))
            return
        yield key, (result.pixels, bool(result.blank))

    def _error(self, key: str, stage: str, exc: BaseException) -> dict[str, Any]:
        values = (key, stage, type(exc).__name__, str(exc) or repr(exc), self._run_id, self._model_id)
        return dict(zip(ERRORS_SCHEMA.names, values, strict=True))


class PredictionRowFn(beam.DoFn):
    """``(key, PredictionResult)`` -> one predictions-table row (a dict), built by
    :func:`mnist_batch.tables.prediction_columns` as scoring builds its rows."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def process(self, element) -> Iterator[dict[str, Any]]:
        (key, blank), result = element
        columns = prediction_columns(
            [key], [None], [blank], np.asarray(result.inference)[None, :],
            runtime_model_id=result.model_id, scored_at=datetime.datetime.now(datetime.UTC), **self._fields,
        )  # fmt: skip
        yield {name: column[0].as_py() for name, column in columns.items()}


class ScoreDigits(beam.PTransform):
    """Scores image files or ``(key, bytes)`` pairs; returns ``{"predictions": rows, "errors": rows}``.

    Args:
      model: the ``.keras`` file (local or any Beam filesystem) with its card beside it.
      runtime: ``auto`` (the card's LiteRT file when its agreement with Keras is recorded at
        >= 99.9 %), ``keras`` or ``litert``.
      run_id: written on every row (default ``api``).
      review_threshold: rows with confidence below it are ``low_confidence`` (None: the card's, or 0.9).
      not_digit_threshold: rows whose not-digit score is at least this are ``not_digit`` (default: the
        card's; a model without the check leaves both columns null).
      max_batch_size: images per model call (Beam's ``BatchElements`` bound).
      max_file_bytes, max_pixels: per-file limits, as ``mnist-batch score``'s.

    Raises (when built):
      ModelError: the model does not match its card, or the runtime's file is missing or damaged.
    """

    def __init__(
        self,
        model: str,
        *,
        runtime: str = AUTO_RUNTIME,
        run_id: str = "api",
        review_threshold: float | None = None,
        not_digit_threshold: float | None = None,
        max_batch_size: int = 256,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        from mnist_batch.models import check_model, choose_runtime

        card = check_model(model, load=False)
        self.scorer = choose_runtime(model, card, runtime)
        self._handler = KeyedModelHandler(
            DigitModelHandler(
                self.scorer.uri,
                model_id=self.scorer.model_id,
                runtime=self.scorer.runtime,
                max_batch_size=max_batch_size,
            )
        )
        self._decode_args = (max_file_bytes, max_pixels, run_id, card.model_id)
        fields = {"class_names": tuple(card.class_names), "model_id": card.model_id, "run_id": run_id}
        flag_at, _ = threshold_for(card.not_digit_check(), not_digit_threshold)
        review_at, _ = review_threshold_for(card.review_threshold(), check_review_threshold(review_threshold))
        self._fields = {**fields, "review_threshold": review_at, "not_digit_threshold": flag_at}

    def expand(self, pcoll):
        decoded = (
            pcoll
            | "ToSources" >> beam.Map(to_source)
            | "DecodeImages"
            >> beam.ParDo(DecodeDigitFn(*self._decode_args, storage_settings(pcoll))).with_outputs(
                ERRORS, main="images"
            )
        )
        keyed = decoded.images | "KeyByBlank" >> beam.Map(lambda kv: ((kv[0], kv[1][1]), kv[1][0]))
        predictions = (
            keyed
            | "RunInference" >> RunInference(self._handler)
            | "FormatRows" >> beam.ParDo(PredictionRowFn(self._fields))
        )
        return {PREDICTIONS: predictions, ERRORS: decoded[ERRORS]}


__all__ = ["ERRORS", "PREDICTIONS", "ScoreDigits"]
