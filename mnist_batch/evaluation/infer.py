"""Class probabilities of one model on one split: arrays through tf.data, folders through scoring."""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time

import numpy as np

from mnist_batch.errors import MnistBatchError

BATCH_SIZE = 512


class InferenceError(MnistBatchError, ValueError):
    """A model cannot be evaluated on the data (unreadable model, class count mismatch, no images)."""


@dataclasses.dataclass(frozen=True)
class Predictions:
    """What one model said about every example of a split.

    Attributes:
      probabilities: float32 [N, C], rows sum to 1.
      labels: int [N] true class ids.
      seconds: wall time of inference alone (model loaded, first batch traced before timing
        for arrays; the whole Beam run for folders).
      paths: str [N] image files (folder inputs), or None for arrays.
      pixels: uint8 [N, 28, 28] the images the model saw (arrays), or None for folders.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    seconds: float
    paths: list[str] | None = None
    pixels: np.ndarray | None = None

    @property
    def images_per_s(self) -> float:
        return float(len(self.labels) / self.seconds) if self.seconds > 0 else float("nan")


def load_model(path: str, num_classes: int):
    """Loads a ``.keras`` model with the model layer's loader and checks its output width.

    Raises:
      InferenceError: unreadable file, or outputs that are not ``[None, num_classes]``.
    """
    from mnist_batch.models import load_keras_model

    try:
        model = load_keras_model(path)
    except Exception as exc:
        raise InferenceError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {exc})") from exc
    if len(model.output_shape) != 2 or model.output_shape[-1] != num_classes:
        raise InferenceError(
            f"{path}: model outputs {model.output_shape[1:]} but the data set has {num_classes} classes"
        )
    return model


def predict_arrays(model_path: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> Predictions:
    """Runs a model over uint8 images with a tf.data pipeline (batch -> LUT normalise -> prefetch).

    Args:
      model_path: ``.keras`` file.
      images: uint8 [N, 28, 28], MNIST format.
      labels: int [N].
      num_classes: C.

    Returns:
      :class:`Predictions` with ``pixels`` set to ``images``.
    """
    import tensorflow as tf

    from mnist_batch.models import Predictor
    from mnist_batch.training.pipeline import normalize_tf

    model = load_model(model_path, num_classes)
    ds = (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(BATCH_SIZE)
        .map(normalize_tf, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    predict = Predictor(model).predict_normalized  # the one compiled call scoring uses, probabilities out
    predict(np.zeros((1, *images.shape[1:], 1), np.float32))  # trace before timing
    start = time.perf_counter()
    outputs = [predict(x) for x in ds]
    seconds = time.perf_counter() - start
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, num_classes), np.float32)
    return Predictions(probabilities, np.asarray(labels, np.int64), seconds, pixels=images)


def predict_folder(model_path: str, directory: str, class_names: tuple[str, ...]) -> Predictions:
    """Scores ``directory/<class>/*`` with the scoring pipeline and reads its predictions back.

    Labels come from the parent folder names as scoring reads them. Files scoring could not
    read are left out (they are not predictions); images without a known label too.

    Raises:
      InferenceError: scoring failed, or no labelled image was scored.
    """
    import pyarrow.parquet as pq

    from mnist_batch.config import ScoreConfig
    from mnist_batch.scoring.pipeline import run_scoring

    with tempfile.TemporaryDirectory(prefix="mnist-batch-eval-") as tmp:
        out = str(pathlib.Path(tmp) / "scored")
        config = ScoreConfig(model=model_path, inputs=(directory,), output=out)
        try:
            summary = run_scoring(config)
        except MnistBatchError as exc:
            raise InferenceError(str(exc)) from exc
        table = pq.read_table(pathlib.Path(out) / "predictions").to_pydict()
    if list(summary.get("class_names", class_names)) != list(class_names):
        raise InferenceError(f"{model_path}: model classes {summary.get('class_names')} != data classes {class_names}")
    keep = [i for i, t in enumerate(table["true_label"]) if t is not None]
    if not keep:
        raise InferenceError(f"{directory}: no image with a known label was scored")
    order = sorted(keep, key=lambda i: table["path"][i])  # stable order: every model sees the same rows
    return Predictions(
        probabilities=np.asarray([table["probabilities"][i] for i in order], np.float32),
        labels=np.asarray([table["true_label"][i] for i in order], np.int64),
        seconds=float(summary["wall_time_s"]),
        paths=[table["path"][i] for i in order],
    )
