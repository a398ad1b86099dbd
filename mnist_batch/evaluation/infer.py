"""Class probabilities of one model on one split: arrays through tf.data, folders through scoring."""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time

import numpy as np

from mnist_batch.constants import AUTO_RUNTIME, COL_BLANK, COL_PATH, COL_PROBABILITIES, COL_TRUE_LABEL
from mnist_batch.errors import MnistBatchError
from mnist_batch.models import ScoringModel
from mnist_batch.tables import COL_NOT_DIGIT_SCORE
from mnist_batch.trust import split_outputs

BATCH_SIZE = 512


class InferenceError(MnistBatchError, ValueError):
    """A model cannot be evaluated on the data (scoring failed, class mismatch, no labelled images)."""


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
      blank: bool [N] images with no ink (flagged as scoring flags them).
      outputs: float32 [N, C] or [N, C+1], the model's raw outputs (with the not-digit output;
        :func:`mnist_batch.trust.split_outputs`); None: ``probabilities`` are all there is.
      not_digit_score: float32 [N], or None (no check).
      left_out: folder inputs: the files scoring matched or skipped and what became of them
        (``{"files", "evaluated", "errors", "skipped", "unlabelled"}``); None for arrays.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    seconds: float
    paths: list[str] | None = None
    pixels: np.ndarray | None = None
    blank: np.ndarray | None = None
    outputs: np.ndarray | None = None
    not_digit_score: np.ndarray | None = None
    left_out: dict[str, int] | None = None

    @property
    def images_per_s(self) -> float:
        return float(len(self.labels) / self.seconds) if self.seconds > 0 else float("nan")


def predict_arrays(
    scorer: ScoringModel, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> Predictions:
    """Runs a checked model over uint8 images with a tf.data pipeline (batch -> LUT normalise -> prefetch).

    Args:
      scorer: the runtime, file and sha256 chosen and checked by :func:`mnist_batch.models.choose_runtime`
        (only those bytes are loaded).
      images: uint8 [N, 28, 28], MNIST format.
      labels: int [N].
      num_classes: C, the card's classes (default: the model's outputs, no not-digit output).

    Returns:
      :class:`Predictions` with ``pixels`` set to ``images``.
    """
    import tensorflow as tf

    from mnist_batch.models import Predictor
    from mnist_batch.preprocess import MIN_INK_CONTRAST
    from mnist_batch.training.pipeline import normalize_tf

    predictor = Predictor.load(scorer.uri, scorer.model_id, runtime=scorer.runtime)
    ds = (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(BATCH_SIZE)
        .map(normalize_tf, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    predictor.predict_normalized(np.zeros((1, *images.shape[1:], 1), np.float32))  # trace before timing
    start = time.perf_counter()
    outputs = [predictor.predict_normalized(x) for x in ds]
    seconds = time.perf_counter() - start
    raw = np.concatenate(outputs) if outputs else np.zeros((0, predictor.num_classes), np.float32)
    probabilities, scores = split_outputs(raw, num_classes or predictor.num_classes)
    span = images.max(axis=(1, 2)).astype(np.int64) - images.min(axis=(1, 2)) if len(images) else np.zeros(0)
    return Predictions(
        probabilities,
        np.asarray(labels, np.int64),
        seconds,
        pixels=images,
        blank=span < MIN_INK_CONTRAST,
        outputs=raw,
        not_digit_score=scores,
    )


def predict_folder(
    model_path: str, directory: str, class_names: tuple[str, ...], runtime: str = AUTO_RUNTIME
) -> Predictions:
    """Scores ``directory/<class>/*`` with the scoring pipeline and reads its predictions back.

    Labels come from the parent folder names as scoring reads them. Files scoring could not
    read are left out (they are not predictions); images without a known label too.

    Raises:
      InferenceError: scoring failed, or no labelled image was scored.
    """
    import pyarrow.parquet as pq

    from mnist_batch.config import ScoreConfig
    from mnist_batch.scoring.launch import run_scoring

    with tempfile.TemporaryDirectory(prefix="mnist-batch-eval-") as tmp:
        out = str(pathlib.Path(tmp) / "scored")
        config = ScoreConfig(model=model_path, inputs=(directory,), output=out, runtime=runtime)
        try:
            summary = run_scoring(config)
        except MnistBatchError as exc:
            raise InferenceError(str(exc)) from exc
        table = pq.read_table(pathlib.Path(out) / "predictions").to_pydict()
    if list(summary.get("class_names", class_names)) != list(class_names):
        raise InferenceError(f"{model_path}: model classes {summary.get('class_names')} != data classes {class_names}")
    keep = [i for i, t in enumerate(table[COL_TRUE_LABEL]) if t is not None]
    scores = table.get(COL_NOT_DIGIT_SCORE) or [None] * len(table[COL_TRUE_LABEL])
    if not keep:
        raise InferenceError(f"{directory}: no image with a known label was scored")
    order = sorted(keep, key=lambda i: table[COL_PATH][i])  # stable order: every model sees the same rows
    probabilities = np.asarray([table[COL_PROBABILITIES][i] for i in order], np.float32)
    not_digit = None if scores[order[0]] is None else np.asarray([scores[i] for i in order], np.float32)
    outputs = None  # the C+1 outputs again: split_outputs gives back these probabilities and scores
    if not_digit is not None:
        outputs = np.concatenate([probabilities * (1 - not_digit[:, None]), not_digit[:, None]], axis=1)
    counts = summary["counts"]
    left_out = {
        "files": counts["matched"] + counts["skipped"],
        "evaluated": len(order),
        "errors": counts["errors"],  # unreadable, not an image, or not decodable
        "skipped": counts["skipped"],  # not an image extension, links, the tool's own outputs
        "unlabelled": counts["scored"] - len(order),  # in a folder whose name is not a class
    }
    return Predictions(
        probabilities=probabilities,
        labels=np.asarray([table[COL_TRUE_LABEL][i] for i in order], np.int64),
        seconds=float(summary["wall_time_s"]),
        paths=[table[COL_PATH][i] for i in order],
        blank=np.asarray([table[COL_BLANK][i] for i in order], bool),
        outputs=outputs,
        not_digit_score=not_digit,
        left_out=left_out,
    )
