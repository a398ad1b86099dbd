"""Errors of the model layer: each is one line naming the file and what is wrong (exit 2 on the CLI)."""

from __future__ import annotations

import re

from mnist_batch.errors import MnistBatchError

MODEL_CHANGED_RE = re.compile(
    r"model (?P<uri>.+?) changed since it was checked: sha256 (?P<got>[0-9a-f]+)\.\.\. "
    r"!= card model_id (?P<want>[0-9a-f]+)\.\.\."
)
"""Finds a :class:`ModelChangedError` message in text a runner relayed from a worker."""
MODEL_DAMAGED_RE = re.compile(r"(?P<message>\S[^\n]*?: cannot load the \S+ model: [^\n\[]*[^\n\[ ])")
"""Finds a :class:`ModelFileError` message in text a runner relayed from a worker."""


class ModelError(MnistBatchError, ValueError):
    """A model that cannot be used: missing, unreadable, not matching its card, another than expected."""


TRAIN_EXTRA = "pip install 'mnist-batch[train]'"
"""What adds TensorFlow to a scoring-only install (``pip install mnist-batch`` scores with LiteRT)."""


class MissingTensorFlowError(ModelError):
    """TensorFlow is needed (training, export, the ``keras`` runtime) and this install has none."""


def require_tensorflow(what: str) -> None:
    """Raises :class:`MissingTensorFlowError` naming ``what`` and the install that adds it, when
    TensorFlow (or Keras) cannot be imported; imports nothing itself."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        raise MissingTensorFlowError(f"{what} needs TensorFlow, which this scoring-only install lacks: {TRAIN_EXTRA}")


class ModelChangedError(ModelError):
    """Model bytes whose sha256 is not the ``model_id`` that was checked (the file changed in between)."""

    def __init__(self, uri: str, actual: str, expected: str) -> None:
        super().__init__(
            f"model {uri} changed since it was checked: sha256 {actual[:12]}... != card model_id {expected[:12]}..."
        )


class ModelFileError(ModelError):
    """A model file that cannot be loaded: a ``.keras`` that is not a Keras 3 archive (not a zip, truncated,
    damaged, incomplete), or a runtime artifact its runtime refuses."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Keras and h5py messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def model_error_in_text(text: str) -> str | None:
    """The one-line model error (changed, damaged) held in ``text``, e.g. a worker's relayed traceback."""
    changed = MODEL_CHANGED_RE.search(text)
    if changed:
        return ModelChangedError(changed["uri"], changed["got"], changed["want"]).args[0]
    damaged = MODEL_DAMAGED_RE.search(text)
    return damaged["message"] if damaged else None
