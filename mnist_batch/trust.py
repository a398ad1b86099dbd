"""Is this image a digit at all? The not-digit output, its threshold, and what a threshold costs.

A model trained with ``--not-digit`` (the default) has one output more than it has classes:
output ``C`` is "not a digit", learnt from generated non-digits (:mod:`mnist_batch.synthetic`).
Everything that reads a model's outputs splits them here, once:

* :func:`split_outputs`: float32 [B, C+1] -> the C class probabilities renormalised (so
  ``probabilities`` and ``confidence`` keep their meaning) and the not-digit score [B];
* :class:`NotDigitCheck`: the card's ``not_digit`` entry (output index and threshold), checked;
* :func:`choose_threshold`: the threshold picked on validation data at export;
* :func:`risk_coverage`: the trade-off of the review threshold, for the report.

numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

CLEAN_FLAG_BUDGET = 0.005
"""At most this share of clean validation digits may be flagged not-a-digit by the chosen threshold."""

MAX_THRESHOLD = 0.5
"""The chosen threshold is never above this: at 0.5 "not a digit" is already the likelier answer."""

THRESHOLD_GRID = np.round(np.concatenate([np.arange(0.01, 0.1, 0.01), np.arange(0.1, 0.501, 0.02)]), 4)
"""Candidate thresholds :func:`choose_threshold` tries."""


class NotDigitCardError(ValueError):
    """A card's ``not_digit`` entry is damaged (not an object, index or threshold wrong)."""


@dataclasses.dataclass(frozen=True)
class NotDigitCheck:
    """The not-digit check of a model: which output, and from which score on an image is flagged.

    Attributes:
      output_index: the model output that says "not a digit" (C, after the C classes).
      threshold: rows with ``not_digit_score >= threshold`` are ``not_digit``; in (0, 1].
    """

    output_index: int
    threshold: float

    @classmethod
    def from_card(cls, entry: Any, num_classes: int, *, where: str) -> NotDigitCheck | None:
        """The check a card's ``not_digit`` entry describes; None for a card without one (older models).

        Raises:
          NotDigitCardError: the entry is there but damaged (``where`` names the card).
        """
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise NotDigitCardError(f"{where}: not_digit must be an object, got {type(entry).__name__}")
        index, threshold = entry.get("output_index"), entry.get("threshold")
        if not isinstance(index, int) or isinstance(index, bool) or index != num_classes:
            raise NotDigitCardError(
                f"{where}: not_digit.output_index must be {num_classes} (after the {num_classes} classes), got {index!r}"
            )
        check_threshold(threshold, f"{where}: not_digit.threshold", NotDigitCardError)
        return cls(index, float(threshold))


def check_threshold(value: Any, name: str, error: type[Exception] = ValueError) -> float:
    """``value`` as a threshold in (0, 1]; else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0.0 < float(value) <= 1.0:
        raise error(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def split_outputs(outputs: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A model's probabilities -> (class probabilities, not-digit score).

    Args:
      outputs: float32 [B, C] (a model without the check) or [B, C+1] (output C is "not a digit").
      num_classes: C.

    Returns:
      ``(float32 [B, C] rows summing to 1, float32 [B] or None)``: with C+1 outputs the first C
      renormalised and output C; with C outputs, themselves and None.

    Raises:
      ValueError: any other width.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    width = outputs.shape[-1] if outputs.ndim == 2 else -1
    if width == num_classes:
        return outputs, None
    if width != num_classes + 1:
        raise ValueError(f"model outputs {outputs.shape[1:]} for {num_classes} classes (expected {num_classes} or +1)")
    classes = outputs[:, :num_classes]
    total = classes.sum(axis=1, keepdims=True)
    probs = np.where(total > 0, classes / np.maximum(total, 1e-30), 1.0 / num_classes).astype(np.float32)
    return probs, outputs[:, num_classes].copy()


def flag(scores: np.ndarray | None, threshold: float | None) -> np.ndarray | None:
    """bool [B]: ``scores >= threshold``; None when the model has no check."""
    if scores is None or threshold is None:
        return None
    return np.asarray(scores) >= threshold


def choose_threshold(
    digit_scores: np.ndarray, negative_scores: np.ndarray, *, budget: float = CLEAN_FLAG_BUDGET
) -> dict[str, Any]:
    """The card's threshold: the lowest of :data:`THRESHOLD_GRID` flagging at most ``budget`` of clean
    validation digits (:data:`MAX_THRESHOLD` if none does), with what it costs and catches.

    Args:
      digit_scores: float [N] not-digit scores of held-out (validation) digits.
      negative_scores: float [M] scores of generated non-digits never trained on.
      budget: the largest share of clean digits the threshold may flag.

    Returns:
      ``{"threshold", "budget", "validation_digits", "validation_digits_flagged",
      "validation_negatives", "validation_negatives_flagged"}`` (shares as fractions).
    """
    digit_scores, negative_scores = np.asarray(digit_scores), np.asarray(negative_scores)
    threshold = MAX_THRESHOLD
    for t in THRESHOLD_GRID:
        if len(digit_scores) == 0 or float((digit_scores >= t).mean()) <= budget:
            threshold = float(t)
            break
    return {
        "threshold": threshold,
        "budget": budget,
        "validation_digits": len(digit_scores),
        "validation_digits_flagged": float((digit_scores >= threshold).mean()) if len(digit_scores) else None,
        "validation_negatives": len(negative_scores),
        "validation_negatives_flagged": float((negative_scores >= threshold).mean()) if len(negative_scores) else None,
    }


def risk_coverage(
    confidence: np.ndarray, correct: np.ndarray, not_digit: np.ndarray | None = None, also: tuple[float, ...] = ()
) -> dict[str, list]:
    """Risk (error rate of what is kept) against coverage (share kept) as the review threshold moves.

    An image is kept when its confidence is at least the threshold and it is not flagged not-a-digit.

    Args:
      confidence: float [N]; correct: bool [N]; not_digit: bool [N] or None.
      also: more thresholds to measure (the run's own review threshold).

    Returns:
      ``{"threshold": [T], "coverage": [T], "risk": [T]}`` for thresholds 0, 0.5, ..., 0.999 and ``also``, ascending.
    """
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    keep_base = np.ones(len(confidence), bool) if not_digit is None else ~np.asarray(not_digit, bool)
    thresholds = sorted({0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, *map(float, also)})
    coverage, risk = [], []
    for t in thresholds:
        kept = keep_base & (confidence >= t)
        coverage.append(float(kept.mean()) if len(kept) else 0.0)
        risk.append(float((~correct[kept]).mean()) if kept.any() else 0.0)
    return {"threshold": thresholds, "coverage": coverage, "risk": risk}


def threshold_for(check: NotDigitCheck | None, override: float | None) -> tuple[float | None, str]:
    """The threshold a run flags with, and where it came from.

    Returns:
      ``(threshold, source)``: ``(override, "--not-digit-threshold")`` or ``(card's, "model card")``;
      ``(None, "none")`` when the model has no not-digit output (the columns are null).
    """
    if check is None:
        return None, "none"
    if override is not None:
        return float(override), "--not-digit-threshold"
    return check.threshold, "model card"


def describe(threshold: float | None, source: str) -> str:
    """One line for the console: the check that ran, or that the model has none."""
    if threshold is None:
        return "not-digit check: none (the model card has no not-digit threshold: an older model; not_digit is null)"
    return f"not-digit check: not_digit_score >= {threshold:g} ({source})"
