"""Single-image prediction for one-off checks: files -> class, confidence, top-k.

Uses the scoring side's pieces, so a file gets exactly what a scoring run would give it:
:func:`mnist_batch.scoring.model_handler.check_model` (model vs card), ``load_checked_model`` (the checked bytes),
:func:`mnist_batch.preprocess.preprocess_bytes` (decode + MNIST-style normalisation) and
:func:`mnist_batch.preprocess.normalize` (the shared LUT), then ``to_probabilities``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

from mnist_batch.preprocess import ImageDecodeError, MnistImage, normalize, preprocess_bytes


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model's answer for one file.

    Attributes:
      path: the file.
      image: the preprocessed 28x28 MNIST-format image the model saw.
      probabilities: float32 [C].
      class_names: C names.
    """

    path: str
    image: MnistImage
    probabilities: np.ndarray
    class_names: tuple[str, ...]

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


def read_and_preprocess(path: str) -> MnistImage:
    """Reads one file and preprocesses it as scoring does.

    Raises:
      ImageDecodeError: unreadable file (missing, a directory, no permission) or undecodable bytes.
    """
    try:
        data = pathlib.Path(path).read_bytes()
    except IsADirectoryError as exc:
        raise ImageDecodeError("is a directory, not an image file") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError("no such file") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read ({exc.strerror or exc})") from exc
    return preprocess_bytes(data)


def predict_files(model_path: str, paths: Sequence[str]) -> list[Prediction | Failure]:
    """Classifies each file; a bad file becomes a :class:`Failure`, the others still run.

    Args:
      model_path: ``.keras`` file with its model card.
      paths: image files.

    Returns:
      One :class:`Prediction` or :class:`Failure` per path, in order.

    Raises:
      ScoringError: the model or its card is unusable (before any image is read).
    """
    from mnist_batch.scoring.model_handler import check_model, load_checked_model, to_probabilities

    card = check_model(model_path)
    model, _ = load_checked_model(model_path, card.model_id)  # the checked bytes, not a later file
    results: list[Prediction | Failure] = []
    images: list[tuple[int, MnistImage]] = []
    for i, path in enumerate(paths):
        try:
            images.append((i, read_and_preprocess(path)))
            results.append(Failure(path, ""))  # placeholder, replaced below
        except ImageDecodeError as exc:
            results.append(Failure(path, str(exc)))
    if images:
        batch = normalize(np.stack([m.pixels for _, m in images]))
        probabilities = to_probabilities(np.asarray(model(batch, training=False)))
        for (i, image), row in zip(images, probabilities, strict=True):
            results[i] = Prediction(paths[i], image, row, tuple(card.class_names))
    return results


def save_preprocessed(image: MnistImage, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the 28x28 uint8 image the model saw as a grayscale PNG."""
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.pixels, mode="L").save(path)
    return path
