"""Outlier exposure: the training split plus generated non-digits as class C, and the card's threshold.

Seeds are disjoint by role: training negatives use ``seed`` with the ``train`` fonts, the
threshold's validation negatives ``seed + VALIDATION_SEED_OFFSET`` with the ``validation`` fonts
(:mod:`mnist_batch.synthetic`); ``evaluate --trust`` uses others again. Fashion-MNIST is never
used here: it is for evaluation only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_batch import review, synthetic, trust
from mnist_batch.data.base import Split

VALIDATION_SEED_OFFSET = 1_000_003
"""Added to the training seed for the validation negatives (never the training ones)."""

VALIDATION_NEGATIVES = 2_000
"""Generated non-digits the threshold is chosen on."""


def with_negatives(split: Split, num_classes: int, share: float, seed: int) -> tuple[Split, int]:
    """``split`` plus ``round(share * len(split))`` generated non-digits labelled ``num_classes``.

    Args:
      split: the training digits, uint8 [N, 28, 28] and labels [N] in [0, C).
      num_classes: C, the label the negatives get.
      share: negatives per training image; 0 returns ``split`` unchanged.
      seed: the generator's seed (training fonts).

    Returns:
      ``(split with N + M rows, M)``; rows are shuffled by the input pipeline.
    """
    count = round(share * len(split))
    if count == 0:
        return split, 0
    negatives = synthetic.negatives(count, seed=seed, role="train", kinds=synthetic.TRAINING_KINDS)
    images = np.concatenate([np.asarray(split.images, np.uint8), negatives])
    labels = np.concatenate([np.asarray(split.labels).astype(np.int64), np.full(count, num_classes, np.int64)])
    return Split(images, labels.astype(split.labels.dtype if num_classes < 255 else np.int64)), count


def threshold_entry(
    predict, validation: Split, num_classes: int, seed: int, test_scores: np.ndarray | None = None
) -> dict[str, Any]:
    """The card's ``not_digit`` entry: the threshold chosen on validation digits and held-out negatives.

    Args:
      predict: uint8 [B, 28, 28] -> float32 [B, C+1] (the exported model's Predictor).
      validation: the validation digits.
      num_classes: C.
      seed: the training seed (the validation negatives use another, :data:`VALIDATION_SEED_OFFSET`).
      test_scores: float [N] not-digit scores of the test digits, to record their flagged share.

    Returns:
      ``{"output_index": C, "threshold", ...}`` (:func:`mnist_batch.trust.choose_threshold`'s fields).
    """
    negatives = synthetic.negatives(
        VALIDATION_NEGATIVES, seed=seed + VALIDATION_SEED_OFFSET, role="validation", kinds=synthetic.TRAINING_KINDS
    )
    _, digit_scores = trust.split_outputs(predict(validation.images), num_classes)
    _, negative_scores = trust.split_outputs(predict(negatives), num_classes)
    chosen = trust.choose_threshold(digit_scores, negative_scores)
    entry: dict[str, Any] = {"output_index": num_classes, **chosen}
    if test_scores is not None and len(test_scores):
        entry["test_digits_flagged"] = float((np.asarray(test_scores) >= chosen["threshold"]).mean())
    return entry


REVIEW_SEED_OFFSET = 2_000_003
"""Added to the training seed for the damaged validation digits the review threshold is chosen on
(neither the validation negatives' seed nor ``evaluate --trust``'s)."""


def review_entry(predict, validation: Split, num_classes: int, seed: int, not_digit_threshold: float) -> dict[str, Any]:
    """The card's ``review`` entry: the review threshold chosen on the validation digits and damaged copies.

    Args:
      predict: uint8 [B, 28, 28] -> float32 [B, C+1] (the exported model's Predictor).
      validation: the validation digits, uint8 [N, 28, 28] and labels [N].
      num_classes: C.
      seed: the training seed (the damage uses ``seed + REVIEW_SEED_OFFSET + i`` for corruption i).
      not_digit_threshold: the card's not-digit threshold (a row it flags is not wrong and unflagged).

    Returns:
      :func:`mnist_batch.review.choose_review_threshold`'s fields.
    """
    labels = np.asarray(validation.labels, np.int64)

    def outcome(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, scores = trust.split_outputs(predict(images), num_classes)
        return probs.max(axis=1), probs.argmax(axis=1) == labels, scores >= not_digit_threshold

    damaged = {
        kind: outcome(synthetic.corrupt(validation.images, kind, seed=seed + REVIEW_SEED_OFFSET + i))
        for i, kind in enumerate(synthetic.CORRUPTIONS)
    }
    return review.choose_review_threshold(damaged, outcome(np.asarray(validation.images)))
