"""A Beam ``ModelHandler`` for Keras 3 ``.keras`` files, and the model-vs-card check.

Beam's ``TFModelHandlerNumpy`` imports ``tensorflow_hub`` (which pulls Keras 2); this
handler loads a Keras 3 file with ``safe_mode=True`` instead. RunInference keeps one loaded
model per worker process and shares it across that process's threads (``shared.Shared``).

Examples are uint8 [28, 28] MNIST-format images (the output of
:func:`mnist_batch.preprocess.to_mnist`); a batch is stacked, mapped through
:data:`~mnist_batch.preprocess.PIXEL_LUT` (:func:`~mnist_batch.preprocess.normalize`) and
run through one ``tf.function`` call that returns numpy probabilities -- measured here to be
much faster than ``model.predict`` per batch or iterating TF tensors row by row.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from mnist_batch.constants import MODEL_INPUT_SHAPE
from mnist_batch.model_card import CARD_SUFFIX, ModelCard, ModelCardError, read_card
from mnist_batch.preprocess import normalize
from mnist_batch.scoring.errors import ScoringError

METRICS_NAMESPACE = "mnist_batch_keras"


@dataclasses.dataclass
class LoadedModel:
    """What :meth:`KerasModelHandler.load_model` returns: the model and its compiled predict call.

    ``predict(x)`` takes float32 [B, 28, 28, 1] and returns float32 numpy [B, C] probabilities.
    """

    model: Any
    predict: Callable[[np.ndarray], np.ndarray]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_model_copy(uri: str) -> pathlib.Path:
    """A local path for ``uri``: itself when local, else a temp copy of the model and its card."""
    if not is_remote(uri):
        return pathlib.Path(uri.removeprefix("file://"))
    directory = pathlib.Path(tempfile.mkdtemp(prefix="mnist_batch_model_"))
    stem = uri.rsplit("/", 1)[-1].removesuffix(".keras")
    targets = {
        uri: directory / f"{stem}.keras",
        uri.removesuffix(".keras") + CARD_SUFFIX: directory / (stem + CARD_SUFFIX),
    }
    for source, target in targets.items():
        try:
            with FileSystems.open(source) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except Exception as exc:
            raise ScoringError(f"{source}: cannot read ({type(exc).__name__}: {exc})") from exc
    return directory / f"{stem}.keras"


_MODEL_CACHE: dict[tuple[str, int, int], Any] = {}
"""Models loaded in this process, by (path, size, mtime): the launcher's check and an in-process
(DirectRunner) worker share one load."""


def load_keras_model(path: str | os.PathLike, *, cache: bool = False) -> Any:
    """Loads a ``.keras`` file with ``safe_mode=True`` (no arbitrary code), without compiling it.

    With ``cache=True`` a model already loaded by this process from the same unchanged file is
    returned instead of loading it again.
    """
    import keras

    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    if cache:
        _MODEL_CACHE.clear()  # keep at most one model
        _MODEL_CACHE[key] = model
    return model


def to_probabilities(outputs: np.ndarray) -> np.ndarray:
    """float32 [B, C] probabilities: the outputs as they are when they already are, else softmax.

    Lets models that end in logits score correctly too.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.size == 0:
        return outputs
    sums = outputs.sum(axis=-1)
    if outputs.min() >= 0.0 and np.allclose(sums, 1.0, atol=1e-3):
        return outputs
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def make_predict_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """One ``tf.function`` (fixed signature, no retracing per batch size) returning numpy."""
    import tensorflow as tf

    shape = (None, *tuple(int(d) for d in model.input_shape[1:]))

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], reduce_retracing=True)
    def call(x):
        return model(x, training=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return to_probabilities(call(tf.convert_to_tensor(x)).numpy())

    return predict


def numpy_inference_fn(
    loaded: LoadedModel, batch: Sequence[np.ndarray], inference_args: dict[str, Any] | None = None
) -> Iterable[PredictionResult]:
    """The default inference: stack, LUT-normalise, one compiled call, numpy rows out."""
    probabilities = loaded.predict(normalize(np.stack(batch)))
    return [PredictionResult(example, row) for example, row in zip(batch, probabilities, strict=True)]


class KerasModelHandler(ModelHandler[np.ndarray, PredictionResult, LoadedModel]):
    """RunInference handler for a Keras 3 ``.keras`` digit model.

    Args:
      model_uri: the ``.keras`` file (local or any Beam filesystem).
      min_batch_size, max_batch_size: bounds for Beam's ``BatchElements``.
      inference_fn: ``(loaded_model, batch, inference_args) -> iterable of PredictionResult``;
        defaults to :func:`numpy_inference_fn`.
      kwargs: passed to ``ModelHandler`` (``large_model``, ``model_copies``, ...).
    """

    def __init__(
        self,
        model_uri: str,
        *,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        inference_fn: Callable[..., Iterable[PredictionResult]] = numpy_inference_fn,
        **kwargs: Any,
    ) -> None:
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, **kwargs)
        self._model_uri = model_uri
        self._inference_fn = inference_fn

    def load_model(self) -> LoadedModel:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        model = load_keras_model(local_model_copy(self._model_uri), cache=True)
        return LoadedModel(model=model, predict=make_predict_fn(model))

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        return self._inference_fn(model, batch, inference_args)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(np.asarray(example).nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def update_model_path(self, model_path: str | None = None) -> None:
        self._model_uri = model_path if model_path else self._model_uri

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise ValueError(f"{type(self).__name__} takes no inference_args, got {sorted(inference_args)}")


def check_model(model_uri: str, expected_id: str | None = None) -> ModelCard:
    """Reads the card, loads the model and checks they agree; before any input file is read.

    Checks: the card's model_id is the file's sha256; with ``expected_id``, that the id starts
    with it (``--expect-model-id``); the card's input shape is the 28x28x1 the preprocessing
    produces; the model's input shape equals the card's; the model's output has one unit per
    class name on the card.

    Raises:
      ScoringError: naming the file and the mismatch.
    """
    local = local_model_copy(model_uri)
    try:
        card = read_card(local)
    except ModelCardError as exc:
        raise ScoringError(str(exc)) from exc
    if expected_id is not None and not card.model_id.startswith(expected_id):
        raise ScoringError(
            f"--expect-model-id {expected_id}: {model_uri} has model_id {card.model_id} "
            "(refusing to score with another model)"
        )
    if tuple(card.input_shape) != MODEL_INPUT_SHAPE:
        raise ScoringError(
            f"{model_uri}: card input_shape {list(card.input_shape)} is not the {list(MODEL_INPUT_SHAPE)} "
            "this scorer feeds (28x28 grayscale)"
        )
    try:
        model = load_keras_model(local, cache=True)
    except Exception as exc:
        raise ScoringError(f"{model_uri}: cannot load the Keras model ({type(exc).__name__}: {exc})") from exc
    model_input = tuple(int(d) if d is not None else None for d in model.input_shape[1:])
    if model_input != tuple(card.input_shape):
        raise ScoringError(
            f"{model_uri}: model input shape {list(model_input)} does not match the card's {list(card.input_shape)}"
        )
    units = model.output_shape[-1]
    if len(model.output_shape) != 2 or units != card.num_classes:
        raise ScoringError(
            f"{model_uri}: model outputs {model.output_shape[1:]} but the card names {card.num_classes} classes "
            f"({', '.join(card.class_names[:5])}{', ...' if card.num_classes > 5 else ''})"
        )
    return card
