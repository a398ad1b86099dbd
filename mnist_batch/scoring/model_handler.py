"""A Beam ``ModelHandler`` for Keras 3 ``.keras`` files, and the model-vs-card check.

Beam's ``TFModelHandlerNumpy`` imports ``tensorflow_hub`` (which pulls Keras 2); this
handler loads a Keras 3 file with ``safe_mode=True`` instead. RunInference keeps one loaded
model per worker process and shares it across that process's threads (``shared.Shared``).

Examples are uint8 [28, 28] MNIST-format images (the output of
:func:`mnist_batch.preprocess.to_mnist`); a batch is stacked, mapped through
:data:`~mnist_batch.preprocess.PIXEL_LUT` (:func:`~mnist_batch.preprocess.normalize`) and
run through one ``tf.function`` call that returns numpy probabilities -- measured here to be
much faster than ``model.predict`` per batch or iterating TF tensors row by row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from mnist_batch.constants import MODEL_INPUT_SHAPE
from mnist_batch.model_card import CARD_SUFFIX, ModelCard, ModelCardError, bytes_sha256, parse_card, read_card
from mnist_batch.preprocess import normalize
from mnist_batch.scoring.errors import ScoringError

METRICS_NAMESPACE = "mnist_batch_keras"


@dataclasses.dataclass
class LoadedModel:
    """What :meth:`KerasModelHandler.load_model` returns: the model and its compiled predict call.

    ``predict(x)`` takes float32 [B, 28, 28, 1] and returns float32 numpy [B, C] probabilities.
    ``model_id`` is the sha256 of the bytes the model was loaded from (written on every prediction).
    """

    model: Any
    predict: Callable[[np.ndarray], np.ndarray]
    model_id: str | None = None


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


_MODEL_CACHE: dict[tuple[str, int, int], Any] = {}
"""Models loaded in this process by path, by (path, size, mtime) (:func:`load_keras_model`)."""

_BYTES_CACHE: dict[str, Any] = {}
"""Models loaded in this process from bytes, by the sha256 of those bytes: the launcher's check and an
in-process (DirectRunner) worker share one load, and a cached model is always the one those bytes hold."""

KERAS_ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")
"""What every Keras 3 ``.keras`` zip holds: the architecture and the weights."""

MODEL_CHANGED_RE = re.compile(
    r"model (?P<uri>.+?) changed since it was checked: sha256 (?P<got>[0-9a-f]+)\.\.\. "
    r"!= card model_id (?P<want>[0-9a-f]+)\.\.\."
)
MODEL_DAMAGED_RE = re.compile(r"(?P<message>\S[^\n]*?: cannot load the Keras model: [^\n\[]*[^\n\[ ])")


RUNNER_LOGGERS = (
    "apache_beam.runners.common",
    "apache_beam.runners.worker.sdk_worker",
    "apache_beam.runners.portability.local_job_service",
)
"""Where Beam logs a failing DoFn's traceback before re-raising it (in process, on workers, relayed from workers)."""


class ModelChangedError(ScoringError):
    """A worker read model bytes whose sha256 is not the ``model_id`` the launcher checked."""

    def __init__(self, uri: str, actual: str, expected: str) -> None:
        super().__init__(
            f"model {uri} changed since it was checked: sha256 {actual[:12]}... != card model_id {expected[:12]}..."
        )


class ModelFileError(ScoringError):
    """A ``.keras`` file that is not a loadable Keras 3 archive: not a zip, truncated, damaged, incomplete."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Keras and h5py messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_model_bytes(uri: str) -> bytes:
    """The model file's bytes, read once (local path or any Beam filesystem).

    Raises:
      ScoringError: no such file, or unreadable.
    """
    try:
        if not is_remote(uri):
            with open(uri.removeprefix("file://"), "rb") as f:
                return f.read()
        with FileSystems.open(uri) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise ScoringError(f"{uri}: no such model file") from exc
    except Exception as exc:
        raise ScoringError(f"{uri}: cannot read the model file ({type(exc).__name__}: {one_line(exc)})") from exc


def read_model_card(uri: str) -> ModelCard:
    """The card beside the model (``NAME.card.json``), without hashing the model file again.

    Raises:
      ScoringError: no card, unreadable or invalid card.
    """
    try:
        if not is_remote(uri):
            return read_card(uri.removeprefix("file://"), verify_id=False)
        card_uri = uri.removesuffix(".keras") + CARD_SUFFIX
        try:
            with FileSystems.open(card_uri) as f:
                text = f.read().decode("utf-8")
        except Exception as exc:
            raise ModelCardError(f"{card_uri}: model card not found or unreadable ({type(exc).__name__})") from exc
        return parse_card(text, where=card_uri)
    except ModelCardError as exc:
        raise ScoringError(str(exc)) from exc


def check_archive(data: bytes, uri: str) -> None:
    """Refuses bytes that are not a complete Keras 3 ``.keras`` zip, naming what is wrong.

    Raises:
      ModelFileError: not a zip (or truncated: the zip directory is at the end), a damaged
        member (CRC mismatch), or no ``config.json`` / ``model.weights.h5`` in it.
    """
    prefix = f"{uri}: cannot load the Keras model:"
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelFileError(
            f"{prefix} not a complete .keras zip archive ({len(data):,} bytes; truncated, or not a Keras 3 export)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{prefix} damaged zip archive ({one_line(exc)})") from exc
    if damaged is not None:
        raise ModelFileError(f"{prefix} damaged archive member {damaged} (CRC mismatch)")
    missing = [name for name in KERAS_ARCHIVE_MEMBERS if name not in names]
    if missing:
        raise ModelFileError(f"{prefix} the archive has no {' or '.join(missing)} (incomplete export?)")


def load_model_bytes(data: bytes, sha256: str, uri: str) -> Any:
    """Loads the model these exact bytes hold (``safe_mode=True``, not compiled); cached by ``sha256``.

    Keras loads ``.keras`` files by path, so the bytes are written to a private temporary
    folder (mode 0700, removed right after): nothing another process changes is ever loaded.

    Raises:
      ModelFileError: the bytes are not a loadable Keras 3 archive (:func:`check_archive`), or
        Keras refuses them.
    """
    if sha256 in _BYTES_CACHE:
        return _BYTES_CACHE[sha256]
    check_archive(data, uri)
    import keras

    with tempfile.TemporaryDirectory(prefix="mnist_batch_model_") as directory:
        path = os.path.join(directory, "model.keras")
        with open(path, "xb") as f:
            f.write(data)
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise ModelFileError(f"{uri}: cannot load the Keras model: {type(exc).__name__}: {one_line(exc)}") from exc
    _BYTES_CACHE.clear()  # keep at most one model
    _BYTES_CACHE[sha256] = model
    return model


def load_checked_model(uri: str, expected_id: str | None) -> tuple[Any, str]:
    """Reads the model once, hashes those bytes, refuses them unless their sha256 is ``expected_id``,
    and loads the model from the same bytes.

    Returns:
      ``(model, sha256 of the bytes loaded)``.

    Raises:
      ModelChangedError: the bytes' sha256 is not ``expected_id``.
      ModelFileError, ScoringError: unreadable or damaged file.
    """
    data = read_model_bytes(uri)
    actual = bytes_sha256(data)
    if expected_id is not None and actual != expected_id:
        raise ModelChangedError(uri, actual, expected_id)
    return load_model_bytes(data, actual, uri), actual


def is_model_error_text(text: str) -> bool:
    """True when ``text`` holds one of this module's one-line model errors (changed, damaged)."""
    return bool(MODEL_CHANGED_RE.search(text) or MODEL_DAMAGED_RE.search(text))


class ModelErrorLogFilter(logging.Filter):
    """Drops Beam's traceback log of a model error raised while loading: the command line reports
    it as one line (:func:`worker_model_errors`), and the exception still propagates."""

    def filter(self, record: logging.LogRecord) -> bool:
        texts = [record.getMessage()]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(str(record.exc_info[1]))
        return not any(is_model_error_text(text) for text in texts)


MODEL_ERROR_LOG_FILTER = ModelErrorLogFilter()


def quiet_model_error_logs() -> None:
    """Installs :data:`MODEL_ERROR_LOG_FILTER` on Beam's runner loggers in this process (idempotent)."""
    for name in RUNNER_LOGGERS:
        logging.getLogger(name).addFilter(MODEL_ERROR_LOG_FILTER)


def worker_error_message(exc: BaseException) -> str | None:
    """The one-line model error (changed, damaged) a worker raised, found in what the runner re-raised.

    The DirectRunner re-raises a worker's exception with its step name appended (in process) or
    as a RuntimeError holding the worker's traceback (multi-process, portable runners); both
    carry the message.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        changed = MODEL_CHANGED_RE.search(text)
        if changed:
            return ModelChangedError(changed["uri"], changed["got"], changed["want"]).args[0]
        damaged = MODEL_DAMAGED_RE.search(text)
        if damaged:
            return damaged["message"]
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def worker_model_errors() -> Iterator[None]:
    """Turns a worker's model error, however the runner wraps it, into one ScoringError line (exit 2).

    Beam's own traceback log of that error is dropped too (:class:`ModelErrorLogFilter`).

    Raises:
      ScoringError: the worker's message, without runner context or traceback.
    """
    quiet_model_error_logs()
    try:
        yield
    except Exception as exc:
        message = worker_error_message(exc)
        if message is None:
            raise
        raise ScoringError(message) from exc


def load_keras_model(path: str | os.PathLike, *, cache: bool = False) -> Any:
    """Loads a ``.keras`` file with ``safe_mode=True`` (no arbitrary code), without compiling it.

    With ``cache=True`` a model already loaded by this process from the same unchanged file is
    returned instead of loading it again.
    """
    import keras

    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    if cache:
        _MODEL_CACHE.clear()  # keep at most one model
        _MODEL_CACHE[key] = model
    return model


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


def make_predict_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """One ``tf.function`` (fixed signature, no retracing per batch size) returning numpy."""
    import tensorflow as tf

    shape = (None, *tuple(int(d) for d in model.input_shape[1:]))

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], reduce_retracing=True)
    def call(x):
        return model(x, training=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return to_probabilities(call(tf.convert_to_tensor(x)).numpy())

    return predict


def numpy_inference_fn(
    loaded: LoadedModel, batch: Sequence[np.ndarray], inference_args: dict[str, Any] | None = None
) -> Iterable[PredictionResult]:
    """The default inference: stack, LUT-normalise, one compiled call, numpy rows out."""
    probabilities = loaded.predict(normalize(np.stack(batch)))
    return [PredictionResult(example, row, loaded.model_id) for example, row in zip(batch, probabilities, strict=True)]


class KerasModelHandler(ModelHandler[np.ndarray, PredictionResult, LoadedModel]):
    """RunInference handler for a Keras 3 ``.keras`` digit model.

    Each worker reads the file once, hashes those bytes and loads the model from the same
    bytes (:func:`load_checked_model`), so the model that scores is the one whose sha256 was
    checked: with ``model_id`` (the card's, checked by the launcher, ``--expect-model-id``
    included) other bytes are refused with :class:`ModelChangedError` and the run fails.
    Every prediction carries the sha256 of the bytes used (``PredictionResult.model_id``).

    Args:
      model_uri: the ``.keras`` file (local or any Beam filesystem).
      model_id: the sha256 the bytes must have; None loads whatever the file holds.
      min_batch_size, max_batch_size: bounds for Beam's ``BatchElements``.
      inference_fn: ``(loaded_model, batch, inference_args) -> iterable of PredictionResult``;
        defaults to :func:`numpy_inference_fn`.
      kwargs: passed to ``ModelHandler`` (``large_model``, ``model_copies``, ...).
    """

    def __init__(
        self,
        model_uri: str,
        *,
        model_id: str | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        inference_fn: Callable[..., Iterable[PredictionResult]] = numpy_inference_fn,
        **kwargs: Any,
    ) -> None:
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, **kwargs)
        self._model_uri = model_uri
        self._model_id = model_id
        self._inference_fn = inference_fn

    def load_model(self) -> LoadedModel:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        quiet_model_error_logs()  # a refusal below is reported once, as one line, by the launcher
        model, model_id = load_checked_model(self._model_uri, self._model_id)
        return LoadedModel(model=model, predict=make_predict_fn(model), model_id=model_id)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        return self._inference_fn(model, batch, inference_args)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(np.asarray(example).nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def update_model_path(self, model_path: str | None = None) -> None:
        self._model_uri = model_path if model_path else self._model_uri

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise ValueError(f"{type(self).__name__} takes no inference_args, got {sorted(inference_args)}")


def check_model(model_uri: str, expected_id: str | None = None) -> ModelCard:
    """Reads the card, loads the model and checks they agree; before any input file is read.

    The model file is read once: those bytes are checked (a complete Keras archive), hashed and
    loaded, so nothing replaced in between is checked in their place. Checks: the archive is
    sound (:func:`check_archive`: not a zip, truncated, missing weights are named as such); the
    card's model_id is the bytes' sha256; with ``expected_id``, that the id starts with it
    (``--expect-model-id``); the card's input shape is the 28x28x1 the preprocessing produces;
    the model's input shape equals the card's; the model's output has one unit per class name
    on the card. Workers later load only bytes with this same sha256 (:class:`KerasModelHandler`).

    Raises:
      ScoringError: naming the file and the mismatch (:class:`ModelFileError` for a damaged file).
    """
    card = read_model_card(model_uri)
    data = read_model_bytes(model_uri)
    check_archive(data, model_uri)
    actual = bytes_sha256(data)
    if actual != card.model_id:
        raise ScoringError(
            f"{model_uri}: sha256 {actual[:12]}... does not match the card's model_id {card.model_id[:12]}... "
            "(model file replaced without its card?)"
        )
    if expected_id is not None and not card.model_id.startswith(expected_id):
        raise ScoringError(
            f"--expect-model-id {expected_id}: {model_uri} has model_id {card.model_id} "
            "(refusing to score with another model)"
        )
    if tuple(card.input_shape) != MODEL_INPUT_SHAPE:
        raise ScoringError(
            f"{model_uri}: card input_shape {list(card.input_shape)} is not the {list(MODEL_INPUT_SHAPE)} "
            "this scorer feeds (28x28 grayscale)"
        )
    model = load_model_bytes(data, actual, model_uri)
    model_input = tuple(int(d) if d is not None else None for d in model.input_shape[1:])
    if model_input != tuple(card.input_shape):
        raise ScoringError(
            f"{model_uri}: model input shape {list(model_input)} does not match the card's {list(card.input_shape)}"
        )
    units = model.output_shape[-1]
    if len(model.output_shape) != 2 or units != card.num_classes:
        raise ScoringError(
            f"{model_uri}: model outputs {model.output_shape[1:]} but the card names {card.num_classes} classes "
            f"({', '.join(card.class_names[:5])}{', ...' if card.num_classes > 5 else ''})"
        )
    return card
