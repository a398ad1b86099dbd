"""The model layer, shared by training, scoring, evaluation and predict (no Beam at import).

* :mod:`~mnist_batch.models.files` -- read a ``.keras`` file once, check it is a Keras 3 archive,
  hash it, load the model from those same bytes (``safe_mode=True``);
* :mod:`~mnist_batch.models.check` -- :func:`check_model`: the model against its card, before
  any input is read; :func:`choose_runtime`: which runtime scores (``--runtime``), its file checked;
* :mod:`~mnist_batch.models.runtimes` -- the runtimes a model runs on (``keras``, ``litert``);
* :mod:`~mnist_batch.models.artifacts` -- :func:`make_artifact`: a runtime's file made at export,
  measured against Keras on the held-out split, recorded in the card (TensorFlow needed);
* :mod:`~mnist_batch.models.predictor` -- :class:`Predictor`: uint8 [B, 28, 28] -> float32 [B, C];
* :mod:`~mnist_batch.models.errors` -- :class:`ModelError` and its kinds (one line each).
"""

from mnist_batch.models.check import ScoringModel, check_model, choose_runtime
from mnist_batch.models.errors import ModelChangedError, ModelError, ModelFileError, model_error_in_text
from mnist_batch.models.files import load_checked_model, load_keras_model, read_model_card
from mnist_batch.models.predictor import Predictor, compiled_call, to_probabilities

__all__ = [
    "ModelChangedError",
    "ModelError",
    "ModelFileError",
    "Predictor",
    "ScoringModel",
    "check_model",
    "choose_runtime",
    "compiled_call",
    "load_checked_model",
    "load_keras_model",
    "model_error_in_text",
    "read_model_card",
    "to_probabilities",
]
