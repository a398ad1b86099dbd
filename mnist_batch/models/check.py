"""The model-vs-card check and the runtime choice, run once before any input is read."""

from __future__ import annotations

import dataclasses
from typing import Any

from mnist_batch.constants import AUTO_RUNTIME, FAST_RUNTIME, KERAS_RUNTIME, MODEL_INPUT_SHAPE, RUNTIME_CHOICES
from mnist_batch.model_card import ModelCard, bytes_sha256
from mnist_batch.models.errors import ModelError, require_tensorflow
from mnist_batch.models.files import (
    check_archive,
    load_checked_model,
    load_model_bytes,
    read_model_bytes,
    read_model_card,
)
from mnist_batch.models.runtimes import MIN_AGREEMENT, get_runtime, load_artifact


def check_model(model_uri: str, expected_id: str | None = None, *, load: bool = True) -> ModelCard:
    """Reads the card, checks the model file against it (and, with ``load``, loads it); returns the card.

    The model file is read once: those bytes are checked (a complete Keras archive), hashed and
    loaded, so nothing replaced in between is checked in their place. Checks: the archive is
    sound (:func:`~mnist_batch.models.files.check_archive`: not a zip, truncated, missing weights
    are named as such); the card's model_id is the bytes' sha256; with ``expected_id``, that the
    id starts with it (``--expect-model-id``); the card's input shape is the 28x28x1 the
    preprocessing produces; with ``load``, the model's input shape equals the card's and its
    output has one unit per class name on the card. Whoever scores later loads only bytes with
    this same sha256 (:func:`~mnist_batch.models.files.load_checked_model`).

    Args:
      load: load the Keras model and check its shapes (TensorFlow); without it, the runtime that
        scores is checked instead (:func:`choose_runtime`).

    Raises:
      ModelError: naming the file and the mismatch (:class:`ModelFileError` for a damaged file).
    """
    card = read_model_card(model_uri)
    data = read_model_bytes(model_uri)
    check_archive(data, model_uri)
    actual = bytes_sha256(data)
    if actual != card.model_id:
        raise ModelError(
            f"{model_uri}: sha256 {actual[:12]}... does not match the card's model_id {card.model_id[:12]}... "
            "(model file replaced without its card?)"
        )
    if expected_id is not None and not card.model_id.startswith(expected_id):
        raise ModelError(
            f"--expect-model-id {expected_id}: {model_uri} has model_id {card.model_id} "
            "(refusing to score with another model)"
        )
    if tuple(card.input_shape) != MODEL_INPUT_SHAPE:
        raise ModelError(
            f"{model_uri}: card input_shape {list(card.input_shape)} is not the {list(MODEL_INPUT_SHAPE)} "
            "this scorer feeds (28x28 grayscale)"
        )
    if load:
        check_shapes(load_model_bytes(data, actual, model_uri), card, model_uri)
    return card


def check_shapes(model: Any, card: ModelCard, uri: str) -> None:
    """The model (Keras, or a runtime's callable) takes the card's input and has one output per class.

    Raises:
      ModelError: naming ``uri`` and the mismatch.
    """
    model_input = tuple(int(d) if d is not None else None for d in model.input_shape[1:])
    if model_input != tuple(card.input_shape):
        raise ModelError(
            f"{uri}: model input shape {list(model_input)} does not match the card's {list(card.input_shape)}"
        )
    units = model.output_shape[-1]
    if len(model.output_shape) != 2 or units != card.num_outputs:
        extra = " and a not-digit output" if card.not_digit is not None else ""
        raise ModelError(
            f"{uri}: model outputs {tuple(model.output_shape[1:])} but the card names {card.num_classes} classes "
            f"({', '.join(card.class_names[:5])}{', ...' if card.num_classes > 5 else ''}){extra}"
        )


@dataclasses.dataclass(frozen=True)
class ScoringModel:
    """What scores a run: a runtime, the file it loads and that file's sha256.

    Attributes:
      runtime: ``keras`` or an artifact runtime's name.
      uri: the ``.keras`` file, or the artifact beside it.
      model_id: the sha256 the file must have; every prediction row carries it.
      reason: why this runtime (``--runtime auto`` explains its choice).
      agreement: the artifact's recorded agreement with Keras (``{}`` for keras).
    """

    runtime: str
    uri: str
    model_id: str
    reason: str
    agreement: dict[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The runtime fields of a run's summary.json."""
        return {
            "runtime": self.runtime,
            "runtime_model": self.uri,
            "runtime_model_id": self.model_id,
            "runtime_reason": self.reason,
            "runtime_agreement": self.agreement or None,
        }


def auto_runtime(card: ModelCard) -> tuple[str, str]:
    """``(runtime, reason)`` that ``--runtime auto`` takes for ``card``."""
    entry = card.runtimes.get(FAST_RUNTIME)
    if not entry:
        return KERAS_RUNTIME, (
            f"the card records no {FAST_RUNTIME} artifact (make one: mnist-batch export MODEL.keras --runtime "
            f"{FAST_RUNTIME})"
        )
    agreed = (entry.get("agreement") or {}).get("argmax_agreement")
    split = (entry.get("agreement") or {}).get("split", "held-out")
    if agreed is None or agreed < MIN_AGREEMENT:
        shown = "not measured" if agreed is None else f"{agreed:.2%}"
        return (
            KERAS_RUNTIME,
            f"{FAST_RUNTIME} agreed with Keras on {shown} of the {split} split (< {MIN_AGREEMENT:.1%})",
        )
    flags = (entry.get("agreement") or {}).get("not_digit_agreement")
    if flags is not None and flags < MIN_AGREEMENT:
        return (
            KERAS_RUNTIME,
            f"{FAST_RUNTIME} gave Keras' not-digit flag on {flags:.2%} of the {split} split (< {MIN_AGREEMENT:.1%})",
        )
    if not get_runtime(FAST_RUNTIME).available():
        package = get_runtime(FAST_RUNTIME).package
        return KERAS_RUNTIME, f"{package} is not installed here"
    return (
        FAST_RUNTIME,
        f"{FAST_RUNTIME} agreed with Keras on {agreed:.2%} of the {split} split (>= {MIN_AGREEMENT:.1%})",
    )


def keras_scorer(model_uri: str, card: ModelCard, reason: str) -> ScoringModel:
    """The ``.keras`` file as the scoring runtime, loaded from its checked bytes and its shapes checked."""
    require_tensorflow(f"the keras runtime ({reason})")
    model, _ = load_checked_model(model_uri, card.model_id)  # cached when check_model loaded it
    check_shapes(model, card, model_uri)
    return ScoringModel(KERAS_RUNTIME, model_uri, card.model_id, reason)


def choose_runtime(model_uri: str, card: ModelCard, requested: str = AUTO_RUNTIME) -> ScoringModel:
    """Picks the runtime that scores and checks its file: sha256 as recorded, loadable, right shapes.

    Args:
      model_uri: the checked ``.keras`` file (:func:`check_model`).
      card: its card.
      requested: ``auto`` (the fast runtime when its recorded agreement is at least
        :data:`~mnist_batch.models.runtimes.MIN_AGREEMENT`, its package is installed and its
        file is there, else keras, with the reason), ``keras``, or an artifact runtime's name
        (strict: its file must be there).

    Raises:
      ModelError: an unknown runtime; a runtime asked for whose artifact the card does not
        record, whose file is missing, changed or damaged, or whose package is not installed.
    """
    if requested not in RUNTIME_CHOICES:
        raise ModelError(f"unknown --runtime {requested!r} (choose from {', '.join(RUNTIME_CHOICES)})")
    if requested == AUTO_RUNTIME:
        runtime, reason = auto_runtime(card)
    else:
        runtime, reason = requested, "asked for with --runtime"
    if runtime == KERAS_RUNTIME:
        return keras_scorer(model_uri, card, reason)
    spec = get_runtime(runtime)
    entry = card.runtimes.get(runtime)
    uri = spec.artifact_uri(model_uri)
    if not entry:
        raise ModelError(
            f"{model_uri}: the card records no {runtime} artifact; make it with "
            f"`mnist-batch export {model_uri} --runtime {runtime}`, or score with --runtime {KERAS_RUNTIME}"
        )
    try:
        data = read_model_bytes(uri)
    except ModelError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise
        if requested == AUTO_RUNTIME:  # copied without its runtime file: the .keras file still scores
            return keras_scorer(model_uri, card, f"the card's {runtime} file {uri} is absent (model copied without it)")
        raise ModelError(
            f"{exc} (the card records this {runtime} file: copy it beside the model, or pass --runtime {KERAS_RUNTIME})"
        ) from exc
    actual = bytes_sha256(data)
    if actual != entry.get("sha256"):
        raise ModelError(
            f"{uri}: sha256 {actual[:12]}... does not match the card's {runtime} sha256 "
            f"{str(entry.get('sha256'))[:12]}... (artifact replaced without its card? re-run mnist-batch export)"
        )
    check_shapes(load_artifact(spec, data, uri), card, uri)
    return ScoringModel(runtime, uri, actual, reason, dict(entry.get("agreement") or {}))
