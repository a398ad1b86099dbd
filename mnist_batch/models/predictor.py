"""One way from images to probabilities: ``Predictor`` (uint8 [B, 28, 28] -> float32 [B, C]).

The scoring handler, ``evaluate``, ``predict``, training's export metrics and the benchmarks all
call this. A batch is mapped through :data:`~mnist_batch.preprocess.PIXEL_LUT`
(:func:`~mnist_batch.preprocess.normalize`) and run through the runtime in one call: for
``keras``, one ``tf.function`` with a fixed signature that returns numpy -- measured here to be
much faster than ``model.predict`` per batch or iterating TF tensors row by row
(docs/benchmarks.md); for an artifact runtime (:mod:`mnist_batch.models.runtimes`), its callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_batch.constants import KERAS_RUNTIME
from mnist_batch.preprocess import normalize


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


def compiled_call(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` as one ``tf.function`` (no retracing per batch size), numpy out."""
    import tensorflow as tf

    shape = (None, *tuple(int(d) for d in model.input_shape[1:]))

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], reduce_retracing=True)
    def call(x):
        return model(x, training=False)

    return lambda x: call(tf.convert_to_tensor(x)).numpy()


class Predictor:
    """A loaded digit model as a function: uint8 [B, 28, 28] MNIST-format images -> float32 [B, C].

    Args:
      model: with ``runtime="keras"``, a Keras 3 model taking float32 [B, 28, 28, 1] in [0, 1];
        else the runtime's loaded callable (float32 [B, 28, 28, 1] -> [B, C], with
        ``input_shape`` and ``output_shape``).
      model_id: the sha256 of the bytes it was loaded from (stamped on every prediction row).
      runtime: ``keras`` or an artifact runtime's name.

    Example::

        predictor = Predictor.load("models/cnn.keras", card.model_id)
        probabilities = predictor(images)            # [B, C], rows sum to 1
        fast = Predictor.load("models/cnn.tflite", card.runtimes["litert"]["sha256"], runtime="litert")
    """

    def __init__(self, model: Any, model_id: str | None = None, *, runtime: str = KERAS_RUNTIME) -> None:
        self.model = model
        self.model_id = model_id
        self.runtime = runtime
        self._call = compiled_call(model) if runtime == KERAS_RUNTIME else model

    @classmethod
    def load(
        cls, uri: str, expected_id: str | None = None, *, runtime: str = KERAS_RUNTIME, threads: int | None = None
    ) -> Predictor:
        """Loads the model (``runtime="keras"``) or artifact from ``uri``'s bytes, refused unless their
        sha256 is ``expected_id`` (when given); ``threads`` per call for artifact runtimes."""
        from mnist_batch.models.files import load_checked_model, read_checked_bytes
        from mnist_batch.models.runtimes import get_runtime, load_artifact

        if runtime == KERAS_RUNTIME:
            model, model_id = load_checked_model(uri, expected_id)
            return cls(model, model_id)
        data, model_id = read_checked_bytes(uri, expected_id)
        return cls(load_artifact(get_runtime(runtime), data, uri, threads), model_id, runtime=runtime)

    @property
    def num_classes(self) -> int:
        """C, the model's output units."""
        return int(self.model.output_shape[-1])

    def predict_normalized(self, x: np.ndarray) -> np.ndarray:
        """float32 [B, 28, 28, 1] in [0, 1] (already normalised) -> float32 [B, C] probabilities."""
        return to_probabilities(self._call(np.asarray(x, dtype=np.float32)))

    def __call__(self, images: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """uint8 [B, 28, 28] -> float32 [B, C], ``batch_size`` images per compiled call."""
        images = np.asarray(images)
        if len(images) <= batch_size:
            return self.predict_normalized(normalize(images))
        parts = [
            self.predict_normalized(normalize(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts)
