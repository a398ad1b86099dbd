"""RunInference results -> predictions as ``pyarrow.Table`` chunks; failed batches -> error rows.

Predictions are :data:`~mnist_batch.tables.PREDICTIONS_SCHEMA` tables built per chunk, not per
row (:class:`FormatPredictionsFn`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import RunInference
from apache_beam.transforms.window import GlobalWindows

from mnist_batch.constants import (
    COL_BLANK,
    COL_LOW_CONFIDENCE,
)
from mnist_batch.scoring.aggregate import predictions_table
from mnist_batch.scoring.counters import counter
from mnist_batch.scoring.decode import ImageGroup, ImageKey, error_row
from mnist_batch.scoring.handler import DigitModelHandler
from mnist_batch.tables import COL_NOT_DIGIT


class FormatPredictionsFn(beam.DoFn):
    """``(ImageKey, PredictionResult)`` -> ``pyarrow.Table`` chunks of predictions rows.

    Rows are gathered per bundle and built column by column with numpy (argmax, confidence,
    flags and the probability lists of a whole chunk at once), at most ``rows_per_table``
    rows per table: what the Parquet sink and the statistics combiner then handle per chunk
    instead of per row. Counts ``scored`` / ``low_confidence`` / ``blank`` / ``not_digit`` per chunk.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        model_id: str,
        run_id: str,
        review_threshold: float,
        *,
        runtime_model_id: str | None = None,
        rows_per_table: int = 4096,
        not_digit_threshold: float | None = None,
    ) -> None:
        """``model_id``: the model's identity (its card's); ``runtime_model_id``: the file the runtime loads
        (default ``model_id``), replaced per row by the id of the bytes a worker actually used;
        ``not_digit_threshold``: the run's (None: a model without the check, the columns null)."""
        if rows_per_table <= 0:
            raise ValueError(f"rows_per_table must be > 0, got {rows_per_table}")
        self._class_names = tuple(class_names)
        self._model_id = model_id
        self._runtime_model_id = runtime_model_id or model_id
        self._run_id = run_id
        self._threshold = float(review_threshold)
        self._not_digit_threshold = not_digit_threshold
        self._rows_per_table = rows_per_table
        self._scored = counter("scored")
        self._low = counter("low_confidence")
        self._blank = counter("blank")
        self._not_digit = counter("not_digit")

    def start_bundle(self) -> None:
        self._now = datetime.datetime.now(datetime.UTC)
        self._keys: list[ImageKey] = []
        self._probabilities: list[np.ndarray] = []
        self._model_ids: list[str] = []
        self._rows = 0

    def process(self, element) -> Iterator[Any]:
        key, result = element
        self._keys.append(key)
        self._probabilities.append(np.asarray(result.inference, np.float32)[None])
        self._model_ids.append(result.model_id or self._runtime_model_id)
        self._rows += 1
        if self._rows >= self._rows_per_table:
            yield self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        if self._keys:
            yield GlobalWindows.windowed_value(self._flush())

    def _flush(self):
        keys, probabilities, model_ids = self._keys, self._probabilities, self._model_ids
        self._keys, self._probabilities, self._model_ids, self._rows = [], [], [], 0
        table = predictions_table(
            keys,
            np.concatenate(probabilities).astype(np.float32, copy=False),
            class_names=self._class_names,
            model_id=self._model_id,
            runtime_model_id=model_ids,
            run_id=self._run_id,
            review_threshold=self._threshold,
            scored_at=self._now,
            not_digit_threshold=self._not_digit_threshold,
        )
        self._scored.inc(table.num_rows)
        self._low.inc(int(np.count_nonzero(table.column(COL_LOW_CONFIDENCE).to_numpy())))
        self._blank.inc(int(np.count_nonzero(table.column(COL_BLANK).to_numpy())))
        if self._not_digit_threshold is not None:
            self._not_digit.inc(int(np.count_nonzero(table.column(COL_NOT_DIGIT).to_numpy(zero_copy_only=False))))
        return table


class FormatGroupsFn(FormatPredictionsFn):
    """``PredictionResult`` of a whole group (``example`` = N keys, ``inference`` = [N, C]) -> table chunks.

    The group's rows are added with one numpy call; nothing is done per image in Python.
    """

    def process(self, result) -> Iterator[Any]:
        keys = result.example
        self._keys.extend(keys)
        self._probabilities.append(np.asarray(result.inference, np.float32).reshape(len(keys), -1))
        self._model_ids.extend([result.model_id or self._runtime_model_id] * len(keys))
        self._rows += len(keys)
        if self._rows >= self._rows_per_table:
            yield self._flush()


class InferenceErrorsFn(beam.DoFn):
    """RunInference's failed batches -> one error row per image.

    A failed batch is ``(batch, exception)``; its items are ``(ImageKey, example)`` pairs (keyed
    handler) or :class:`~mnist_batch.scoring.decode.ImageGroup` s (grouped files).
    """

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._errors = counter("inference_errors")

    def process(self, failed) -> Iterator[dict[str, Any]]:
        batch, exc = failed
        if isinstance(exc, tuple) and len(exc) == 3 and isinstance(exc[0], type):  # (type, value, traceback)
            exc = exc[1] if isinstance(exc[1], BaseException) else exc[0](str(exc[1]))
        for item in batch:
            keys = item.keys if isinstance(item, ImageGroup) else (item[0],)
            for key in keys:
                self._errors.inc()
                yield error_row(key.path, "inference", exc, self._run_id)


class ScoreImages(beam.PTransform):
    """:class:`~mnist_batch.scoring.decode.ImageGroup` s -> ``{"predictions": pyarrow.Table chunks, "errors": error rows}``.

    RunInference runs the handler on the pre-grouped files (``with_no_batching``: a group is already
    the batch, one compiled model call); a group that fails becomes one error row per file.
    """

    def __init__(self, handler: DigitModelHandler, format_fn: FormatGroupsFn, run_id: str) -> None:
        super().__init__()
        self._handler = handler
        self._format_fn = format_fn
        self._run_id = run_id

    def expand(self, groups):
        batches = groups | "AsBatches" >> beam.Map(lambda group: [group])  # each group is one pre-made batch
        results, dlq = (
            batches | "RunInference" >> RunInference(self._handler.with_no_batching()).with_exception_handling()
        )
        predictions = results | "FormatPredictions" >> beam.ParDo(self._format_fn)
        errors = dlq.failed_inferences | "InferenceFailuresToErrors" >> beam.ParDo(InferenceErrorsFn(self._run_id))
        return {"predictions": predictions, "errors": errors}
