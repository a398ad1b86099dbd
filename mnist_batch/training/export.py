"""Export: the ``.keras`` file, its test metrics and the model card beside it.

The exported file is an uncompiled, inference-only copy of the trained model (no optimiser
state, no loss), so it is small and loads with ``keras.models.load_model(path,
safe_mode=True)`` without this package. Test metrics are computed on the held-out test split
with the file as written (reloaded with ``safe_mode=True``) through
:class:`mnist_batch.models.Predictor`, the same images -> probabilities path the scoring side uses.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import tempfile
from typing import Any

import keras
import numpy as np

from mnist_batch import metrics
from mnist_batch.constants import MODEL_INPUT_SHAPE, PREPROCESS_VERSION
from mnist_batch.data.base import Split
from mnist_batch.errors import MnistBatchError
from mnist_batch.files import replaced_atomically
from mnist_batch.model_card import ModelCard, card_path, file_sha256, write_card
from mnist_batch.models import Predictor
from mnist_batch.models.artifacts import ArtifactError, make_artifact
from mnist_batch.models.runtimes import get_runtime
from mnist_batch.review import DEFAULT_REVIEW_THRESHOLD
from mnist_batch.training.not_digit import review_entry, threshold_entry
from mnist_batch.trust import split_outputs


class ExportError(MnistBatchError):
    """The export path cannot be written."""


def check_export_path(path: str | os.PathLike) -> pathlib.Path:
    """Checks, before training, that ``path`` (``*.keras``) and its card can be written.

    Creates the parent directory if needed.

    Raises:
      ExportError: wrong suffix, parent not creatable, or not writable.
    """
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ExportError(f"export path {path} must end with .keras")
    if path.is_dir():
        raise ExportError(f"export path {path} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".export-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"export path {path} is not writable ({exc.strerror or exc})") from exc
    return path


def evaluate_split(
    model: keras.Model, split: Split, num_classes: int, probabilities: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy, cross-entropy loss and macro-F1 of ``model`` on ``split`` (``probabilities``: already computed).

    Returns:
      ``{"accuracy", "loss", "macro_f1", "examples"}`` computed with :mod:`mnist_batch.metrics`.
    """
    if probabilities is None:
        probabilities = split_outputs(Predictor(model)(split.images, batch_size=512), num_classes)[0]
    probs = probabilities
    labels = split.labels.astype(np.int64)
    cm = metrics.confusion_matrix(labels, probs.argmax(axis=1), num_classes)
    loss = metrics.log_loss(labels, probs) if len(labels) else float("nan")
    return {
        "accuracy": metrics.accuracy(cm),
        "loss": loss,
        "macro_f1": metrics.macro_f1(cm),
        "examples": len(labels),
    }


def reference_distribution(
    probabilities: np.ndarray, split: str = "test", threshold: float = 0.9, not_digit: np.ndarray | None = None
) -> dict[str, Any]:
    """The card's ``reference``: predicted class mix and binned confidence of held-out probabilities [N, C]
    (and, with the not-digit flags bool [N], their rate: monitoring's baseline). The low-confidence
    rate is recorded at the model's review ``threshold`` and at 0.9 (runs that keep the old default)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    return {
        **{
            f"low_confidence_rate_at_{t}": float((confidence < t).mean()) if len(confidence) else None
            for t in sorted({DEFAULT_REVIEW_THRESHOLD, threshold})
        },
        "split": split,
        "examples": len(probabilities),
        "predicted_class_counts": np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1]).tolist(),
        "confidence_histogram": metrics.confidence_histogram(confidence).tolist(),
        **({"not_digit_rate": float(np.mean(not_digit)) if len(not_digit) else None} if not_digit is not None else {}),
    }


def _is_mixed_policy(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("mixed_")
    if isinstance(value, dict) and "Policy" in str(value.get("class_name", "")):
        return str(value.get("config", {}).get("name", "")).startswith("mixed_")
    return False


def float32_config(config: Any) -> Any:
    """A model config with every mixed-precision layer dtype policy replaced by ``float32``."""
    if isinstance(config, dict):
        return {k: "float32" if k == "dtype" and _is_mixed_policy(v) else float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [float32_config(v) for v in config]
    return config


def inference_copy(model: keras.Model) -> keras.Model:
    """An uncompiled float32 copy of ``model`` with its current weights.

    ``clone_model`` would keep the compile state. A model trained under a mixed policy
    (``mixed_bfloat16`` on CPU, ``mixed_float16`` on GPU) keeps float32 variables, so the copy
    takes them as they are and computes in float32: the exported file scores the same on any
    worker, with or without 16-bit hardware.
    """
    clone = keras.Model.from_config(float32_config(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def save_model(model: keras.Model, path: str | os.PathLike) -> pathlib.Path:
    """Writes the inference copy of ``model`` to ``path`` atomically (temp file + rename)."""
    path = check_export_path(path)
    try:
        with replaced_atomically(path, suffix=".keras") as tmp:
            inference_copy(model).save(tmp)
    except OSError as exc:
        raise ExportError(f"cannot write {path} ({exc.strerror or exc})") from exc
    return path


def export_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    model_name: str,
    dataset: str,
    class_names: tuple[str, ...],
    split_sizes: dict[str, int],
    test_split: Split | None,
    epochs: int,
    strategy: str,
    replicas: int,
    wall_time_s: float,
    extra: dict[str, Any] | None = None,
    runtimes: tuple[str, ...] = (),
    validation_split: Split | None = None,
    seed: int = 0,
) -> tuple[pathlib.Path, ModelCard]:
    """Saves ``model`` to ``path`` and writes its model card beside it.

    Args:
      model: the trained model.
      path: ``*.keras`` destination.
      model_name: zoo name.
      dataset: data set spec trained on.
      class_names: label i is ``class_names[i]``.
      split_sizes: examples per split used.
      test_split: held-out test split for the card's test metrics (None: no metrics).
      epochs: epochs run; strategy / replicas: how it was trained; wall_time_s: training time.
      extra: more to keep in the card's ``extra`` (hyper-parameters, seed, ...).
      runtimes: artifact runtimes to make beside the model (:func:`mnist_batch.models.artifacts.make_artifact`),
        each measured against the saved model on ``test_split`` and recorded in the card.
      validation_split: for a model with the not-digit output (C+1 units), the digits its
        threshold is chosen on (:func:`mnist_batch.training.not_digit.threshold_entry`, with
        negatives of another seed than ``seed``'s) and, with damaged copies of them, the review
        threshold (:func:`~mnist_batch.training.not_digit.review_entry`); None: neither in the card.
      seed: the training seed.

    Returns:
      ``(model path, card)``.

    Raises:
      ExportError: the path cannot be written.
    """
    path = save_model(model, path)
    saved = keras.models.load_model(path, safe_mode=True, compile=False)
    predictor = Predictor(saved)
    raw = predictor(test_split.images, batch_size=512) if test_split is not None else None
    probs, scores = split_outputs(raw, len(class_names)) if raw is not None else (None, None)
    not_digit = review = None
    if validation_split is not None and int(saved.output_shape[-1]) == len(class_names) + 1:
        not_digit = threshold_entry(predictor, validation_split, len(class_names), seed, scores)
        review = review_entry(predictor, validation_split, len(class_names), seed, not_digit["threshold"])
    flags = scores >= not_digit["threshold"] if not_digit is not None and scores is not None else None
    review_at = review["threshold"] if review is not None else DEFAULT_REVIEW_THRESHOLD
    card = ModelCard(
        model_name=model_name,
        model_id=file_sha256(path),
        class_names=tuple(class_names),
        input_shape=tuple(MODEL_INPUT_SHAPE),
        preprocess_version=PREPROCESS_VERSION,
        dataset=dataset,
        split_sizes=dict(split_sizes),
        epochs=int(epochs),
        strategy=strategy,
        replicas=int(replicas),
        tf_version=tensorflow_version(),
        keras_version=keras.__version__,
        wall_time_s=round(float(wall_time_s), 3),
        test_metrics=evaluate_split(saved, test_split, len(class_names), probs) if test_split is not None else {},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        extra=dict(extra or {}),
        reference=reference_distribution(probs, threshold=review_at, not_digit=flags) if probs is not None else None,
        not_digit=not_digit,
        review=review,
    )
    write_model_card(card, path)
    return path, add_runtime_files(saved, path, card, runtimes, test_split, raw)


def tensorflow_version() -> str:
    import tensorflow as tf

    return tf.__version__


def write_model_card(card: ModelCard, path: pathlib.Path) -> None:
    """The card beside the model (``NAME.card.json``).

    Raises:
      ExportError: it cannot be written.
    """
    try:
        write_card(card, path)
    except OSError as exc:
        raise ExportError(f"cannot write {card_path(path)} ({exc.strerror or exc})") from exc


def add_runtime_files(
    saved: keras.Model,
    path: pathlib.Path,
    card: ModelCard,
    runtimes: tuple[str, ...],
    test_split: Split | None,
    probs: np.ndarray | None,
) -> ModelCard:
    """Each runtime's file made beside the model and recorded in its card; the card as it ends.

    A runtime that cannot be made is a warning: the model is kept and scoring runs it on Keras.
    """
    images = test_split.images if test_split is not None else np.zeros((0, *MODEL_INPUT_SHAPE[:2]), np.uint8)
    labels = test_split.labels if test_split is not None else None
    for runtime in runtimes:
        try:
            card = make_artifact(saved, path, card, runtime, images, labels, keras_probabilities=probs)
        except ArtifactError as exc:  # the trained model is kept; scoring then runs it on Keras
            warn(f"{exc}; the model is exported without its {runtime} file (scoring runs it with --runtime keras)")
    return card


def warn(message: str) -> None:
    """One ``mnist-batch: warning: ...`` line on stderr (shown at every verbosity but --quiet's errors-only)."""
    import sys

    print(f"mnist-batch: warning: {message}", file=sys.stderr, flush=True)


def check_runtimes(runtimes: tuple[str, ...]) -> None:
    """Checks, before training, that every runtime asked for at export can run here.

    Raises:
      ExportError: a runtime's package is not installed.
    """
    for name in runtimes:
        runtime = get_runtime(name)
        if not runtime.available():
            raise ExportError(
                f"--export-runtime {name} needs the {runtime.package} package (pip install {runtime.package}), "
                "or pass --export-runtime none"
            )


def add_runtime(
    model_path: str | os.PathLike, runtime: str, *, dataset: str | None = None, split: str = "test"
) -> ModelCard:
    """Makes ``runtime``'s artifact for an exported model and records it in the card (``mnist-batch export``).

    The agreement is measured on ``split`` of ``dataset`` (default: the data set the card names,
    whose split must have the size the card recorded, so it is the held-out split the model was
    tested on).

    Args:
      model_path: a local ``.keras`` file with its card.
      runtime: an artifact runtime (``litert``).
      dataset: data set spec (default: the card's ``dataset``).
      split: the split to measure on.

    Returns:
      The card as written.

    Raises:
      ExportError: no such data set or split, another size than the card's, other classes.
      ModelError: the model does not match its card; the runtime's package is missing.
    """
    from mnist_batch.data import load_dataset
    from mnist_batch.models import check_model, load_checked_model

    path = os.fspath(model_path)
    card = check_model(path)
    check_runtimes((runtime,))
    spec = dataset or card.dataset
    if not spec:
        raise ExportError(f"{path}: the card names no data set; pass --dataset SPEC (its held-out split is measured)")
    data = load_dataset(spec)
    if split not in data.splits or not len(data.splits[split]):
        raise ExportError(f"{spec} has no {split} split to measure the {runtime} artifact on")
    if tuple(data.class_names) != tuple(card.class_names):
        raise ExportError(f"{spec}: classes {list(data.class_names)[:4]}... differ from the model's")
    held_out = data.splits[split]
    recorded = card.split_sizes.get(split)
    if dataset is None and recorded is not None and recorded != len(held_out):
        raise ExportError(
            f"{spec}'s {split} split has {len(held_out):,} images, the card recorded {recorded:,} "
            "(not the split the model was tested on); pass --dataset SPEC to measure on another"
        )
    model, _ = load_checked_model(path, card.model_id)
    return make_artifact(model, path, card, runtime, held_out.images, held_out.labels, split=split)
