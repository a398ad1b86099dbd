"""Single-image prediction for one-off checks: files -> class, confidence, top-k.

Uses what a scoring run uses, so a file gets exactly what scoring would give it, without Beam:
:func:`mnist_batch.models.check_model` (model vs card), :class:`mnist_batch.models.Predictor`
(loaded from the checked bytes), :func:`mnist_batch.files.read_local` (regular files only, at most
``--max-file-bytes``) and :func:`mnist_batch.preprocess.preprocess_bytes` (decode + MNIST-style
normalisation).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

from mnist_batch.constants import AUTO_RUNTIME
from mnist_batch.files import DEFAULT_MAX_FILE_BYTES, FileTooLargeError, NotRegularFileError, read_local
from mnist_batch.preprocess import ImageDecodeError, MnistImage, preprocess_bytes
from mnist_batch.review import DEFAULT_REVIEW_THRESHOLD, review_threshold_for
from mnist_batch.trust import split_outputs, threshold_for


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model's answer for one file.

    Attributes:
      path: the file.
      image: the preprocessed 28x28 MNIST-format image the model saw.
      probabilities: float32 [C] (over the classes; renormalised when the model has a not-digit output).
      class_names: C names.
      not_digit_score: the model's not-digit score (None: the model has no check).
      not_digit_threshold: from this score on the image is not a digit (None: no check).
      review_threshold: below this confidence the answer is ``low_confidence`` (for review).
    """

    path: str
    image: MnistImage
    probabilities: np.ndarray
    class_names: tuple[str, ...]
    not_digit_score: float | None = None
    not_digit_threshold: float | None = None
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD

    @property
    def low_confidence(self) -> bool:
        """The answer is below the review threshold."""
        return self.confidence < self.review_threshold

    @property
    def not_digit(self) -> bool | None:
        """The image is not a digit; None when the model has no not-digit check."""
        if self.not_digit_score is None or self.not_digit_threshold is None:
            return None
        return self.not_digit_score >= self.not_digit_threshold

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.label])

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable classes, most probable first: ``[(name, probability), ...]``."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]


@dataclasses.dataclass(frozen=True)
class Failure:
    """A file that could not be classified, and why (one line)."""

    path: str
    message: str


def read_and_preprocess(path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> MnistImage:
    """Reads one file (regular files only, at most ``max_bytes``) and preprocesses it as scoring does.

    Raises:
      ImageDecodeError: unreadable file (missing, a folder, a FIFO or device, too large, no
        permission) or undecodable bytes.
    """
    try:
        data = read_local(path, max_bytes)
    except NotRegularFileError as exc:
        raise ImageDecodeError("is a directory, not an image file" if "folder" in str(exc) else str(exc)) from exc
    except FileTooLargeError as exc:
        raise ImageDecodeError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError("no such file") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read ({exc.strerror or exc})") from exc
    return preprocess_bytes(data)


def predict_files(
    model_path: str,
    paths: Sequence[str],
    runtime: str = AUTO_RUNTIME,
    not_digit_threshold: float | None = None,
    review_threshold: float | None = None,
) -> list[Prediction | Failure]:
    """Classifies each file; a bad file becomes a :class:`Failure`, the others still run.

    Args:
      model_path: ``.keras`` file with its model card.
      paths: image files.
      runtime: ``auto``, ``keras`` or ``litert`` (:func:`mnist_batch.models.choose_runtime`).
      not_digit_threshold: overrides the card's not-digit threshold (None: the card's).
      review_threshold: overrides the card's review threshold (None: the card's, 0.9 without one).

    Returns:
      One :class:`Prediction` or :class:`Failure` per path, in order.

    Raises:
      ModelError: the model or its card is unusable (before any image is read).
    """
    from mnist_batch.models import Predictor, check_model, choose_runtime

    card = check_model(model_path, load=False)
    scorer = choose_runtime(model_path, card, runtime)
    predictor = Predictor.load(scorer.uri, scorer.model_id, runtime=scorer.runtime)  # the checked bytes
    results: list[Prediction | Failure] = []
    images: list[tuple[int, MnistImage]] = []
    for i, path in enumerate(paths):
        try:
            images.append((i, read_and_preprocess(path)))
            results.append(Failure(path, ""))  # placeholder, replaced below
        except ImageDecodeError as exc:
            results.append(Failure(path, str(exc)))
    if images:
        threshold, _ = threshold_for(card.not_digit_check(model_path), not_digit_threshold)
        review_at, _ = review_threshold_for(card.review_threshold(model_path), review_threshold)
        outputs = predictor(np.stack([m.pixels for _, m in images]))
        probabilities, scores = split_outputs(outputs, card.num_classes)
        for j, ((i, image), row) in enumerate(zip(images, probabilities, strict=True)):
            score = None if scores is None else float(scores[j])
            results[i] = Prediction(paths[i], image, row, tuple(card.class_names), score, threshold, review_at)
    return results


def save_preprocessed(image: MnistImage, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the 28x28 uint8 image the model saw as a grayscale PNG."""
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.pixels, mode="L").save(path)
    return path
