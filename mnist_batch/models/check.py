"""The model-vs-card check, run once before any input is read."""

from __future__ import annotations

from mnist_batch.constants import MODEL_INPUT_SHAPE
from mnist_batch.model_card import ModelCard, bytes_sha256
from mnist_batch.models.errors import ModelError
from mnist_batch.models.files import check_archive, load_model_bytes, read_model_bytes, read_model_card


def check_model(model_uri: str, expected_id: str | None = None) -> ModelCard:
    """Reads the card, loads the model and checks they agree; returns the card.

    The model file is read once: those bytes are checked (a complete Keras archive), hashed and
    loaded, so nothing replaced in between is checked in their place. Checks: the archive is
    sound (:func:`~mnist_batch.models.files.check_archive`: not a zip, truncated, missing weights
    are named as such); the card's model_id is the bytes' sha256; with ``expected_id``, that the
    id starts with it (``--expect-model-id``); the card's input shape is the 28x28x1 the
    preprocessing produces; the model's input shape equals the card's; the model's output has
    one unit per class name on the card. Whoever scores later loads only bytes with this same
    sha256 (:func:`~mnist_batch.models.files.load_checked_model`).

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
    model = load_model_bytes(data, actual, model_uri)
    model_input = tuple(int(d) if d is not None else None for d in model.input_shape[1:])
    if model_input != tuple(card.input_shape):
        raise ModelError(
            f"{model_uri}: model input shape {list(model_input)} does not match the card's {list(card.input_shape)}"
        )
    units = model.output_shape[-1]
    if len(model.output_shape) != 2 or units != card.num_classes:
        raise ModelError(
            f"{model_uri}: model outputs {model.output_shape[1:]} but the card names {card.num_classes} classes "
            f"({', '.join(card.class_names[:5])}{', ...' if card.num_classes > 5 else ''})"
        )
    return card
