"""Runtime artifacts: made once from the ``.keras`` model at export, measured against Keras, recorded in the card.

:func:`make_artifact` converts the model with the runtime's converter, loads the result with the
runtime itself, scores the held-out split with both, and records in the card the artifact's
sha256 and their agreement (argmax agreement, max |delta p|, both accuracies). Scoring then loads
only bytes with that sha256, and ``--runtime auto`` uses the artifact only when the recorded
agreement is at least :data:`~mnist_batch.models.runtimes.MIN_AGREEMENT`.

Needs TensorFlow (the converters); called by ``train --export`` and ``mnist-batch export``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import os
from typing import Any

import numpy as np

from mnist_batch.errors import MnistBatchError
from mnist_batch.files import replaced_atomically
from mnist_batch.model_card import ModelCard, bytes_sha256, write_card
from mnist_batch.models.predictor import Predictor
from mnist_batch.models.runtimes import MIN_AGREEMENT, get_runtime, load_artifact
from mnist_batch.trust import split_outputs


class ArtifactError(MnistBatchError):
    """A runtime artifact cannot be made or written."""


def agreement(
    keras_probabilities: np.ndarray,
    runtime_probabilities: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    num_classes: int | None = None,
    not_digit_threshold: float | None = None,
) -> dict[str, Any]:
    """How closely a runtime reproduces Keras on the same images: the class, and the not-digit flag.

    Args:
      keras_probabilities, runtime_probabilities: float32 [N, K], the models' outputs (K = C, or
        C + 1 with the not-digit output, :func:`mnist_batch.trust.split_outputs`).
      labels: int [N] true classes, for both accuracies (optional).
      num_classes: C (default K: no not-digit output).
      not_digit_threshold: the card's threshold; with it, how often both flag the same rows.

    Returns:
      ``{"examples", "argmax_agreement", "disagreements", "max_abs_diff", "accuracy", "keras_accuracy"}``
      (``argmax_agreement`` None when N is 0), plus ``"not_digit_agreement", "not_digit_disagreements"``
      with a threshold.
    """
    raw_a = np.asarray(keras_probabilities, np.float32)
    raw_b = np.asarray(runtime_probabilities, np.float32)
    n = len(raw_a)
    classes = num_classes if num_classes is not None else raw_a.shape[-1]
    (a, score_a), (b, score_b) = split_outputs(raw_a, classes), split_outputs(raw_b, classes)
    same = a.argmax(axis=1) == b.argmax(axis=1) if n else np.zeros(0, bool)
    out: dict[str, Any] = {
        "examples": int(n),
        "argmax_agreement": float(same.mean()) if n else None,
        "disagreements": int(n - same.sum()),
        "max_abs_diff": float(np.abs(raw_a - raw_b).max()) if n else None,
    }
    if not_digit_threshold is not None and score_a is not None and n:
        same_flag = (score_a >= not_digit_threshold) == (score_b >= not_digit_threshold)
        out["not_digit_agreement"] = float(same_flag.mean())
        out["not_digit_disagreements"] = int(n - same_flag.sum())
    if labels is not None and n:
        labels = np.asarray(labels, np.int64)
        out["accuracy"] = float((b.argmax(axis=1) == labels).mean())
        out["keras_accuracy"] = float((a.argmax(axis=1) == labels).mean())
    return out


def describe_artifact(name: str, entry: dict[str, Any], model_path: str = "") -> str:
    """One line on a card's runtime entry: file, size, agreement with Keras, and whether ``auto`` uses it."""
    folder = os.path.dirname(model_path)
    where = os.path.join(folder, entry.get("file", "")) if folder else entry.get("file", "")
    a = entry.get("agreement") or {}
    if a.get("argmax_agreement") is None:
        measured = "agreement not measured (no held-out split): --runtime auto keeps keras"
    else:
        used = "used by --runtime auto" if a["argmax_agreement"] >= MIN_AGREEMENT else "below 99.9 %: auto keeps keras"
        measured = (
            f"same class as Keras on {a['argmax_agreement']:.2%} of {a['examples']:,} {a.get('split', '')} images "
            f"({a.get('disagreements', 0)} differ), max |dp| {a['max_abs_diff']:.4f}; {used}"
        )
        if a.get("not_digit_agreement") is not None:
            measured += f"; same not-digit flag on {a['not_digit_agreement']:.2%}"
    return f"{name} runtime: {where} ({entry.get('bytes', 0) / 1e6:.2f} MB, sha256 {entry.get('sha256', '')[:12]}...): {measured}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def make_artifact(
    model: Any,
    model_path: str | os.PathLike,
    card: ModelCard,
    runtime_name: str,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    split: str = "test",
    keras_probabilities: np.ndarray | None = None,
) -> ModelCard:
    """Converts ``model`` for ``runtime_name``, measures it on ``images``, writes the file and the card.

    The artifact is written beside ``model_path`` (``cnn.keras`` -> ``cnn.tflite``) through a
    temporary file and a rename, then the card is rewritten (atomically) with its entry.

    Args:
      model: the Keras model loaded from ``model_path`` (the bytes whose sha256 is ``card.model_id``).
      model_path: the local ``.keras`` file.
      card: its card.
      runtime_name: an artifact runtime (:data:`mnist_batch.models.runtimes.RUNTIMES`).
      images: uint8 [N, 28, 28], the held-out split; labels: int [N] (optional).
      split: the split's name, recorded.
      keras_probabilities: float32 [N, K], the outputs of ``model`` on ``images`` when already computed.

    Returns:
      The card as written, with ``runtimes[runtime_name]``.

    Raises:
      ArtifactError: the conversion failed or the file cannot be written.
      ModelError: the runtime's package is missing.
    """
    runtime = get_runtime(runtime_name)
    target = runtime.artifact_uri(os.fspath(model_path))
    try:
        with replaced_atomically(target, suffix=runtime.suffix) as tmp:
            try:
                runtime.convert(model, tmp)
            except Exception as exc:
                raise ArtifactError(
                    f"{target}: cannot convert the model for {runtime.name}: {type(exc).__name__}: {exc}"
                ) from exc
            with open(tmp, "rb") as f:
                data = f.read()
            predictor = Predictor(load_artifact(runtime, data, tmp), bytes_sha256(data), runtime=runtime.name)
            if not len(images):  # nothing held out: recorded as not measured (``auto`` keeps Keras)
                measured = agreement(np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))
            else:
                if keras_probabilities is None:
                    keras_probabilities = Predictor(model)(images, batch_size=512)
                check = card.not_digit_check()
                measured = agreement(
                    keras_probabilities,
                    predictor(images, batch_size=512),
                    labels,
                    num_classes=card.num_classes,
                    not_digit_threshold=check.threshold if check else None,
                )
    except OSError as exc:
        raise ArtifactError(f"cannot write {target} ({exc.strerror or exc})") from exc
    entry = {
        "file": os.path.basename(target),
        "sha256": predictor.model_id,
        "bytes": len(data),
        "description": runtime.description,
        "agreement": {"split": split, **measured},
        "default_when_agreement_at_least": MIN_AGREEMENT,
        "versions": {"tensorflow": _tf_version(), runtime.package: _version(runtime.package)},
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    card = dataclasses.replace(card, runtimes={**card.runtimes, runtime.name: entry})
    try:
        write_card(card, model_path)
    except OSError as exc:
        raise ArtifactError(f"cannot write the card of {model_path} ({exc.strerror or exc})") from exc
    return card
