"""The model card: the JSON written beside every exported model, read by the scoring side.

An export is two files: ``NAME.keras`` (the Keras 3 model, loadable with ``safe_mode=True``)
and ``NAME.card.json`` (this card). ``model_id`` is the sha256 of the ``.keras`` file, so a
card can be checked against the model it describes. Standard library only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

from mnist_batch.errors import MnistBatchError
from mnist_batch.files import replaced_atomically
from mnist_batch.review import ReviewCardError, card_review_threshold
from mnist_batch.trust import NotDigitCardError, NotDigitCheck

CARD_SUFFIX = ".card.json"
CARD_SCHEMA_VERSION = 1


class ModelCardError(MnistBatchError, ValueError):
    """A model card is missing, unreadable, inconsistent, or does not match its model file."""


def card_path(model_path: str | pathlib.Path) -> pathlib.Path:
    """``models/cnn.keras`` -> ``models/cnn.card.json``."""
    model_path = pathlib.Path(model_path)
    return model_path.with_name(model_path.stem + CARD_SUFFIX)


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of bytes already in memory (a model read once, to hash and to load the same bytes)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | pathlib.Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a scoring job needs to know about an exported model, and how it was made.

    Attributes:
      model_name: zoo name, e.g. ``"cnn"``.
      model_id: sha256 of the ``.keras`` file.
      class_names: label i is ``class_names[i]``.
      input_shape: model input shape without the batch axis, e.g. ``[28, 28, 1]``.
      preprocess_version: :data:`mnist_batch.constants.PREPROCESS_VERSION` at training time.
      dataset: data set spec trained on, e.g. ``"sample"``.
      split_sizes: examples per split, e.g. ``{"train": 7000, "validation": 1000, "test": 2000}``.
      epochs: epochs actually run.
      strategy: tf.distribute strategy class name; ``replicas``: replicas in sync.
      tf_version, keras_version: library versions at export.
      wall_time_s: training wall time in seconds.
      test_metrics: held-out test split metrics: ``accuracy``, ``loss``, ``macro_f1``.
      created_at: ISO-8601 UTC time of export.
      extra: anything else worth keeping (hyper-parameters, seed, mixed precision, ...).
      reference: the model's own held-out distribution, the default reference of drift checks
        (``mnist-batch monitor``): ``{"split", "examples", "predicted_class_counts": [C],
        "confidence_histogram": [CONFIDENCE_BINS], "low_confidence_rate_at_0.9"}``; ``None`` in
        cards written before it existed (monitoring then falls back to the model's first run).
      runtimes: artifacts made from this model for faster runtimes, by runtime name
        (:mod:`mnist_batch.models.artifacts`): ``{"file", "sha256", "bytes", "description",
        "agreement": {"split", "examples", "argmax_agreement", "max_abs_diff", "accuracy",
        "keras_accuracy"}, "versions", "created_at"}``. Scoring uses one only when its file has
        that sha256; ``--runtime auto`` only when ``argmax_agreement`` is at least 99.9 %.
      not_digit: the model's not-a-digit check (:mod:`mnist_batch.trust`): ``{"output_index": C,
        "threshold", "budget", "validation_digits[_flagged]", "validation_negatives[_flagged]",
        "test_digits_flagged"}``: the model has C+1 outputs, output C says "not a digit", and
        rows scoring at least ``threshold`` are flagged. ``None``: no check (cards written before
        it, or ``train --not-digit 0``); such a model has C outputs.
      review: the review threshold chosen at export (:mod:`mnist_batch.review`): ``{"threshold",
        "budget", "met", "grid", "validation_digits", "validation_clean_flagged",
        "validation_clean_wrong_unflagged", "validation_damaged": {corruption: {"flagged",
        "wrong_unflagged"}}}``; runs flag ``low_confidence`` below ``threshold`` unless
        ``--review-threshold`` says otherwise. ``None``: 0.9 (cards written before it, models
        without the not-digit check).
    """

    model_name: str
    model_id: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    preprocess_version: str
    dataset: str = ""
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    epochs: int = 0
    strategy: str = ""
    replicas: int = 1
    tf_version: str = ""
    keras_version: str = ""
    wall_time_s: float = 0.0
    test_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    created_at: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    reference: dict[str, Any] | None = None
    runtimes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    not_digit: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    schema_version: int = CARD_SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """The model's output units: one per class, plus the not-digit output when it has one."""
        return self.num_classes + (1 if self.not_digit is not None else 0)

    def not_digit_check(self, where: str = "model card") -> NotDigitCheck | None:
        """The checked :class:`~mnist_batch.trust.NotDigitCheck`; None without one."""
        try:
            return NotDigitCheck.from_card(self.not_digit, self.num_classes, where=where)
        except NotDigitCardError as exc:
            raise ModelCardError(str(exc)) from exc

    def review_threshold(self, where: str = "model card") -> float | None:
        """The checked review threshold the card records; None without one."""
        try:
            return card_review_threshold(self.review, where=where)
        except ReviewCardError as exc:
            raise ModelCardError(str(exc)) from exc

    def stored_reference(self) -> dict[str, Any] | None:
        """What scoring copies into ``summary["model_reference"]`` so that monitoring never needs the card:
        the held-out :attr:`reference` with the model's name, id and test accuracy; None without a reference."""
        ref = self.reference
        if not isinstance(ref, dict) or "predicted_class_counts" not in ref or "confidence_histogram" not in ref:
            return None
        accuracy = (self.test_metrics or {}).get("accuracy")
        return {**ref, "model_name": self.model_name, "model_id": self.model_id, "accuracy": accuracy}

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        data["input_shape"] = list(self.input_shape)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "model card") -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [
            k for k in ("model_name", "model_id", "class_names", "input_shape", "preprocess_version") if k not in data
        ]
        if missing:
            raise ModelCardError(f"{where}: missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["class_names"] = tuple(str(c) for c in data["class_names"])
        kwargs["input_shape"] = tuple(int(d) for d in data["input_shape"])
        card = cls(**kwargs)
        if card.num_classes < 2:
            raise ModelCardError(f"{where}: needs at least two class names, has {card.num_classes}")
        card.not_digit_check(where)  # a damaged entry is refused when the card is read
        card.review_threshold(where)
        return card


def write_card(card: ModelCard, model_path: str | pathlib.Path) -> pathlib.Path:
    """Writes ``card`` beside ``model_path`` atomically (temp file + rename); returns the card's path."""
    path = card_path(model_path)
    with replaced_atomically(path) as tmp:
        pathlib.Path(tmp).write_text(card.to_json(), encoding="utf-8")
    return path


def parse_card(text: str, *, where: str) -> ModelCard:
    """A card from its JSON text.

    Raises:
      ModelCardError: not JSON, not an object, or missing fields (``where`` names the card).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"{where}: unreadable model card ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelCardError(f"{where}: model card is not a JSON object")
    return ModelCard.from_dict(data, where=where)


def read_card(model_path: str | pathlib.Path, *, verify_id: bool = True) -> ModelCard:
    """Reads the card beside ``model_path`` and (by default) checks ``model_id`` against the file.

    Raises:
      ModelCardError: no model file, no card, unreadable JSON, missing fields, or a model
        file whose sha256 differs from the card's ``model_id``.
    """
    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
        raise ModelCardError(f"{model_path}: no such model file")
    path = card_path(model_path)
    if not path.is_file():
        raise ModelCardError(f"{path}: model card not found (export models with `mnist-batch train --export`)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelCardError(f"{path}: unreadable model card ({exc})") from exc
    card = parse_card(text, where=str(path))
    if verify_id:
        actual = file_sha256(model_path)
        if actual != card.model_id:
            raise ModelCardError(
                f"{model_path}: sha256 {actual[:12]}... does not match the card's model_id {card.model_id[:12]}... "
                "(model file replaced without its card?)"
            )
    return card
