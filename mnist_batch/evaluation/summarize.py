"""Metrics of one model's predictions, and the paired comparison of several, as table rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mnist_batch import metrics

COVERAGE = 0.98
"""Share of predictions kept automated when the least confident are sent to review."""

ECE_BINS = 15

SIGNIFICANCE = 0.05


def model_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Every headline metric of one model.

    Args:
      labels: int [N] true class ids.
      probabilities: float [N, C].

    Returns:
      ``examples, accuracy, macro_f1, top2_accuracy, log_loss, ece, coverage,
      error_rate_at_coverage, coverage_threshold`` plus ``confusion`` (int [C, C]) and
      ``per_class`` (see :func:`mnist_batch.metrics.per_class`).
    """
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    correct = predicted == labels
    cm = metrics.confusion_matrix(labels, predicted, probabilities.shape[1])
    at_coverage = metrics.error_rate_at_coverage(confidence, correct, COVERAGE)
    return {
        "examples": int(labels.size),
        "accuracy": metrics.accuracy(cm),
        "macro_f1": metrics.macro_f1(cm),
        "top2_accuracy": metrics.top_k_accuracy(labels, probabilities, k=2),
        "log_loss": metrics.log_loss(labels, probabilities),
        "ece": metrics.expected_calibration_error(confidence, correct, ECE_BINS),
        "coverage": COVERAGE,
        "error_rate_at_coverage": at_coverage["error_rate"],
        "coverage_threshold": at_coverage["threshold"],
        "confusion": cm,
        "per_class": metrics.per_class(cm),
    }


def per_class_rows(model: str, class_names: Sequence[str], stats: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per class: model, label, class_name, support, precision, recall, f1."""
    return [{"model": model, **row} for row in metrics.per_class_table(stats, class_names)]


def confusion_rows(model: str, class_names: Sequence[str], cm: np.ndarray) -> list[dict[str, Any]]:
    """One row per (true, predicted) cell, zeros included (the scoring ``confusion`` columns + model)."""
    return [{"model": model, **row} for row in metrics.confusion_table(cm, class_names)]


def versus_first(correct: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """McNemar's exact test of every model against the first on the same examples.

    Args:
      correct: one bool [N] array per model (same examples, same order).

    Returns:
      One dict per model: ``mcnemar_first_only`` (first right, this wrong), ``mcnemar_this_only``,
      ``mcnemar_p`` and ``significant`` (p < 0.05); None values for the first model itself.
    """
    rows: list[dict[str, Any]] = [
        {"mcnemar_first_only": None, "mcnemar_this_only": None, "mcnemar_p": None, "significant": None}
    ]
    for other in correct[1:]:
        test = metrics.mcnemar(correct[0], other)
        rows.append(
            {
                "mcnemar_first_only": int(test["a_only"]),
                "mcnemar_this_only": int(test["b_only"]),
                "mcnemar_p": float(test["p_value"]),
                "significant": bool(test["p_value"] < SIGNIFICANCE),
            }
        )
    return rows


def significance_note(name: str, first: str, row: dict[str, Any], acc: float, acc_first: float) -> str:
    """One sentence: is the difference to the first model real?"""
    if row["mcnemar_p"] is None:
        return f"{name}: reference model."
    b, c, p = row["mcnemar_first_only"], row["mcnemar_this_only"], row["mcnemar_p"]
    diff = (acc - acc_first) * 100
    verdict = "a real difference (p < 0.05)" if row["significant"] else "not significant (p >= 0.05): could be chance"
    return (
        f"{name} vs {first}: {diff:+.2f} accuracy points; they disagree on {b + c} images "
        f"({first} alone right on {b}, {name} alone right on {c}); McNemar exact p = {p:.3g}, {verdict}."
    )
