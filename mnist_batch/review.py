"""The review threshold: below which confidence a prediction is flagged ``low_confidence``.

A model card written with the not-digit check also records its review threshold, chosen at export
on data training never saw (:func:`choose_review_threshold`): the lowest confidence on
:data:`REVIEW_GRID` at which no damaged set of validation digits leaves more than
:data:`DAMAGED_WRONG_BUDGET` of its digits wrong and unflagged (flagged: below the threshold, or
not a digit). A run takes, in this order: ``--review-threshold``, the card's, or
:data:`DEFAULT_REVIEW_THRESHOLD` for a card without one (:func:`review_threshold_for`).
Pure numpy: the base layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mnist_batch.trust import check_threshold

DEFAULT_REVIEW_THRESHOLD = 0.9
"""The review threshold of a model whose card has none (cards written before it, ``--not-digit 0``)."""

DAMAGED_WRONG_BUDGET = 0.02
"""The largest share of a damaged validation set the chosen threshold may leave wrong and unflagged
(issue 31's target for damaged digits)."""

REVIEW_GRID = np.round(np.arange(0.50, 0.951, 0.01), 2)
"""The thresholds tried, lowest first."""


class ReviewCardError(ValueError):
    """A card's ``review`` entry is damaged (not an object, or its threshold not in (0, 1])."""


def card_review_threshold(entry: Any, *, where: str) -> float | None:
    """The threshold a card's ``review`` entry records; None for a card without one.

    Raises:
      ReviewCardError: the entry is there but damaged (``where`` names the card).
    """
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ReviewCardError(f"{where}: review must be an object, got {type(entry).__name__}")
    return check_threshold(entry.get("threshold"), f"{where}: review.threshold", ReviewCardError)


def review_threshold_for(card_threshold: float | None, override: float | None) -> tuple[float, str]:
    """``(threshold, source)`` a run flags ``low_confidence`` with: the override, the card's, or the default."""
    if override is not None:
        return float(override), "--review-threshold"
    if card_threshold is not None:
        return float(card_threshold), "model card"
    return DEFAULT_REVIEW_THRESHOLD, "default: the model card has none"


def check_review_threshold(value: Any, name: str = "review_threshold", error: type[Exception] = ValueError):
    """``value`` unless it is not None and not a number in [0, 1] (then ``error`` naming ``name``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise error(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def flagged(confidence: np.ndarray, not_digit: np.ndarray | None, t: float) -> np.ndarray:
    """bool [N]: below ``t`` (float [N] confidence) or flagged not a digit (bool [N], or None)."""
    low = confidence < t
    return low if not_digit is None else low | not_digit


def wrong_unflagged(confidence: np.ndarray, correct: np.ndarray, not_digit: np.ndarray | None, t: float) -> float:
    """Share of rows that are wrong and not :func:`flagged` at ``t`` (correct: bool [N])."""
    if len(confidence) == 0:
        return 0.0
    return float((~correct & ~flagged(confidence, not_digit, t)).mean())


def choose_review_threshold(
    sets: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    clean: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    *,
    budget: float = DAMAGED_WRONG_BUDGET,
) -> dict[str, Any]:
    """The card's ``review`` entry: the lowest of :data:`REVIEW_GRID` keeping every damaged set within ``budget``.

    Args:
      sets: damaged validation digits by corruption name: ``(confidence float [N], correct bool [N],
        not_digit bool [N] or None)``.
      clean: the same for the clean validation digits (recorded, not a constraint: their few errors
        are mostly digits no threshold catches without flagging many right ones).
      budget: the largest wrong-and-unflagged share any damaged set may keep.

    Returns:
      ``{"threshold", "budget", "met", "grid", "validation_digits", "validation_clean_flagged",
      "validation_clean_wrong_unflagged", "validation_damaged": {name: {"flagged", "wrong_unflagged"}}}``;
      ``met`` False (no grid value keeps the budget) leaves :data:`DEFAULT_REVIEW_THRESHOLD`.
    """
    chosen, met = DEFAULT_REVIEW_THRESHOLD, False
    for t in REVIEW_GRID:
        if all(wrong_unflagged(*s, float(t)) <= budget for s in sets.values()):
            chosen, met = float(t), True
            break

    def share(conf: np.ndarray, nd: np.ndarray | None) -> float:
        return float(flagged(conf, nd, chosen).mean()) if len(conf) else 0.0

    return {
        "threshold": chosen,
        "budget": budget,
        "met": met,
        "grid": [float(REVIEW_GRID[0]), float(REVIEW_GRID[-1]), 0.01],
        "validation_digits": len(clean[0]),
        "validation_clean_flagged": share(clean[0], clean[2]),
        "validation_clean_wrong_unflagged": wrong_unflagged(*clean, chosen),
        "validation_damaged": {
            name: {"flagged": share(s[0], s[2]), "wrong_unflagged": wrong_unflagged(*s, chosen)}
            for name, s in sets.items()
        },
    }
