"""``DigitModelHandler``: RunInference's adapter to the model layer (stores, loads, delegates).

Beam's ``TFModelHandlerNumpy`` imports ``tensorflow_hub`` (which pulls Keras 2); this handler
stores the model file's URI, its checked id and its runtime (``keras`` or an artifact runtime such
as ``litert``, :mod:`mnist_batch.models.runtimes`), loads a :class:`~mnist_batch.models.Predictor`
from the checked bytes on each worker, and delegates each batch to it. RunInference keeps one loaded
model per worker process and shares it across that process's threads (``shared.Shared``).

Examples are uint8 [28, 28] MNIST-format images (the output of
:func:`mnist_batch.preprocess.to_mnist`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from mnist_batch.constants import KERAS_RUNTIME
from mnist_batch.models import Predictor
from mnist_batch.runstore import storage
from mnist_batch.runstore.beam_s3 import bound_beam_client
from mnist_batch.scoring.worker_errors import quiet_model_error_logs

METRICS_NAMESPACE = "mnist_batch_model"


def numpy_inference_fn(
    predictor: Predictor, batch: Sequence[np.ndarray], inference_args: dict[str, Any] | None = None
) -> Iterable[PredictionResult]:
    """The default inference: one stacked batch through the predictor, numpy rows out."""
    probabilities = predictor(np.stack(batch))
    return [
        PredictionResult(example, row, predictor.model_id) for example, row in zip(batch, probabilities, strict=True)
    ]


def group_inference_fn(
    predictor: Predictor, batch: Sequence[Any], inference_args: dict[str, Any] | None = None
) -> Iterable[PredictionResult]:
    """Inference over pre-grouped images: each element is an :class:`~mnist_batch.scoring.decode.ImageGroup`
    (N keys, uint8 [N, 28, 28]); one compiled call per group, one result per group
    (``example`` = the keys, ``inference`` = float32 [N, C])."""
    return [PredictionResult(group.keys, predictor(group.pixels), predictor.model_id) for group in batch]


class DigitModelHandler(ModelHandler[np.ndarray, PredictionResult, Predictor]):
    """RunInference handler for an exported digit model: the ``.keras`` file or a runtime artifact.

    Each worker reads the file once, hashes those bytes and loads the model from the same
    bytes (:meth:`Predictor.load`), so the model that scores is the one whose sha256 was
    checked: with ``model_id`` (the card's, checked by the launcher, ``--expect-model-id``
    included) other bytes are refused with :class:`~mnist_batch.models.ModelChangedError` and
    the run fails. Every prediction carries the sha256 of the bytes used
    (``PredictionResult.model_id``).

    Args:
      model_uri: the ``.keras`` file or the runtime's artifact (local or any Beam filesystem).
      model_id: the sha256 the bytes must have; None loads whatever the file holds.
      runtime: ``keras`` or an artifact runtime's name (:func:`mnist_batch.models.choose_runtime`).
      min_batch_size, max_batch_size: bounds for Beam's ``BatchElements``.
      inference_fn: ``(predictor, batch, inference_args) -> iterable of PredictionResult``;
        defaults to :func:`numpy_inference_fn`.
      large_model: share one loaded model across a worker's processes (Beam's ``multi_process_shared``).
      model_copies: with ``large_model``, how many copies of it to load at most.

    The batching and sharing options are kept here, not passed to ``ModelHandler.__init__``:
    Beam 2.70 (the version pinned for the Flink runner, requirements.txt) takes no arguments there.
    """

    def __init__(
        self,
        model_uri: str,
        *,
        model_id: str | None = None,
        runtime: str = KERAS_RUNTIME,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        inference_fn: Callable[..., Iterable[PredictionResult]] = numpy_inference_fn,
        large_model: bool = False,
        model_copies: int | None = None,
        storage_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._storage_settings = dict(storage_settings or {})  # the model may be on the bucket
        self._batch_kwargs = {
            name: value
            for name, value in (("min_batch_size", min_batch_size), ("max_batch_size", max_batch_size))
            if value is not None
        }
        self._large_model = large_model
        self._model_copies = model_copies
        self._model_uri = model_uri
        self._model_id = model_id
        self._runtime = runtime
        self._inference_fn = inference_fn

    def load_model(self) -> Predictor:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        quiet_model_error_logs()  # a refusal below is reported once, as one line, by the launcher
        storage.configure_worker(self._storage_settings)  # before the model's bytes are read, on any worker
        bound_beam_client()  # a model on S3 is read through Beam's S3 filesystem
        return Predictor.load(self._model_uri, self._model_id, runtime=self._runtime)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: Predictor,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        return self._inference_fn(model, batch, inference_args)

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch_kwargs)

    def share_model_across_processes(self) -> bool:
        return self._large_model

    def model_copies(self) -> int:
        return self._model_copies or 1

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Bytes of the images in ``batch`` (single images or groups of them)."""
        return sum(np.asarray(getattr(example, "pixels", example)).nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def update_model_path(self, model_path: str | None = None) -> None:
        self._model_uri = model_path if model_path else self._model_uri

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise ValueError(f"{type(self).__name__} takes no inference_args, got {sorted(inference_args)}")
