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


def predict_files(model_path: str, paths: Sequence[str], runtime: str = AUTO_RUNTIME) -> list[Prediction | Failure]:
    """Classifies each file; a bad file becomes a :class:`Failure`, the others still run.

    Args:
      model_path: ``.keras`` file with its model card.
      paths: image files.
      runtime: ``auto``, ``keras`` or ``litert`` (:func:`mnist_batch.models.choose_runtime`).

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
        probabilities = predictor(np.stack([m.pixels for _, m in images]))
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
