"""Classification metrics on integer labels (numpy only).

Shared by training (model card test metrics), scoring (per-class statistics from the
Beam confusion matrix) and evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENCE_BINS = 20
"""Confidence histograms (scoring summaries, model cards, monitoring) use these equal bins over [0, 1]."""


def confidence_histogram(confidence: np.ndarray, bins: int = CONFIDENCE_BINS) -> np.ndarray:
    """int64 [bins] counts of top-class confidences in equal bins over [0, 1] (1.0 in the last bin)."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


def population_stability_index(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """PSI of two count (or frequency) vectors over the same bins: sum((a - e) * ln(a / e)).

    Both are normalised to frequencies; empty bins get ``eps`` so the index stays finite. Rules of
    thumb: < 0.1 no shift, 0.1-0.25 moderate, > 0.25 large. Returns 0.0 when either side is empty.
    """
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Args:
      y_true: int [N] true class ids.
      y_pred: int [N] predicted class ids.
      num_classes: C.

    Returns:
      int64 [C, C]; entry [t, p] counts examples of class t predicted as p.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has values outside [0, {num_classes - 1}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class support, precision, recall and F1 from a confusion matrix.

    A class never predicted has precision 0; a class with no support has recall 0
    (scikit-learn's ``zero_division=0`` convention).

    Args:
      cm: int [C, C] confusion matrix (rows true, columns predicted).

    Returns:
      ``{"support": int [C], "precision": float [C], "recall": float [C], "f1": float [C]}``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"support": support.astype(np.int64), "precision": precision, "recall": recall, "f1": f1}


def accuracy(cm: np.ndarray) -> float:
    """Share of examples on the diagonal; NaN for an empty matrix."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


MACRO_NOTE = "macro averages are over the classes present in the labels (support > 0); absent classes are n/a"
"""What the pages say about every macro figure."""


def present_classes(cm: np.ndarray) -> np.ndarray:
    """bool [C]: the classes that occur in the labels (row sums of the confusion matrix > 0)."""
    return np.asarray(cm).sum(axis=1) > 0


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in the labels (support > 0); NaN when none is.

    A class that is only predicted (no true example) is a false-positive sink, already counted in
    the precision of nothing present; averaging its F1 of 0 in would make a run holding only some
    classes look bad however well it did on them (0.66 where every present class has F1 0.997)."""
    stats = per_class(cm)
    present = present_classes(cm)
    return float(stats["f1"][present].mean()) if present.any() else float("nan")


def top_k_accuracy(y_true: np.ndarray, probabilities: np.ndarray, k: int = 2) -> float:
    """Share of examples whose true class is among the ``k`` most probable.

    Args:
      y_true: int [N].
      probabilities: float [N, C].
      k: how many top classes count.
    """
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    # Rank of the true class's probability: how many classes are strictly more probable.
    true_p = probabilities[np.arange(y_true.size), y_true]
    rank = (probabilities > true_p[:, None]).sum(axis=1)
    return float((rank < k).mean())


def log_loss(y_true: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped to ``[eps, 1]``)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    p = np.clip(probabilities[np.arange(y_true.size), y_true], eps, 1.0)
    return float(-np.log(p).mean())


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Groups predictions into equal-width confidence bins over ``[0, 1]``.

    Bin b holds confidences in ``(b / n_bins, (b + 1) / n_bins]`` (the first bin includes 0).

    Args:
      confidence: float [N], the top-class probability.
      correct: bool [N], whether the top class was right.
      n_bins: number of bins (15 is the usual choice for ECE).

    Returns:
      ``{"lower", "upper": float [B] edges, "count": int [B], "confidence": float [B] mean
      confidence, "accuracy": float [B]}`` (mean values are NaN for empty bins).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, acc_sum / count, np.nan)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": mean_conf, "accuracy": mean_acc}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over equal-width bins."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return float("nan")
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float((gaps * bins["count"][filled]).sum() / total)


def error_rate_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float = 0.98) -> dict[str, float]:
    """Error rate among the most confident ``coverage`` share of predictions.

    What a review threshold buys: send the least confident ``1 - coverage`` to people, and
    this is the error rate of what is left automated.

    Returns:
      ``{"coverage", "threshold": lowest confidence kept, "error_rate", "kept": count}``.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    n = confidence.size
    if n == 0:
        return {"coverage": coverage, "threshold": float("nan"), "error_rate": float("nan"), "kept": 0}
    kept = max(1, int(np.floor(coverage * n)))
    order = np.argsort(-confidence, kind="stable")[:kept]
    return {
        "coverage": coverage,
        "threshold": float(confidence[order[-1]]),
        "error_rate": float(1.0 - correct[order].mean()),
        "kept": kept,
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's test on paired predictions of two models over the same examples.

    Uses the exact two-sided binomial test on the discordant pairs (b = A right & B wrong,
    c = A wrong & B right), which is valid for small counts; the chi-square statistic with
    continuity correction is reported alongside.

    Returns:
      ``{"a_only": b, "b_only": c, "statistic": chi2 with continuity correction, "p_value": exact}``.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired results differ in shape: {a.shape} vs {b.shape}")
    n01 = int((a & ~b).sum())
    n10 = int((~a & b).sum())
    n = n01 + n10
    if n == 0:
        return {"a_only": 0, "b_only": 0, "statistic": 0.0, "p_value": 1.0}
    k = min(n01, n10)
    # Exact two-sided p-value: 2 * P(X <= k) for X ~ Binomial(n, 1/2), capped at 1.
    log_pmf = [_log_comb(n, i) - n * np.log(2.0) for i in range(k + 1)]
    p_value = min(1.0, 2.0 * float(np.exp(np.logaddexp.reduce(log_pmf))))
    statistic = (abs(n01 - n10) - 1) ** 2 / n
    return {"a_only": n01, "b_only": n10, "statistic": float(statistic), "p_value": p_value}


def _log_comb(n: int, k: int) -> float:
    from math import lgamma

    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)


def per_class_table(stats: dict[str, np.ndarray], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of :func:`per_class` output, one per class, as written to ``per_class`` tables.

    Args:
      stats: the dict :func:`per_class` returns.
      class_names: C names; row i is class i.

    Returns:
      ``[{"label", "class_name", "support", "precision", "recall", "f1"}, ...]`` with plain
      Python numbers.
    """
    return [
        {
            "label": i,
            "class_name": name,
            "support": int(stats["support"][i]),
            "precision": float(stats["precision"][i]),
            "recall": float(stats["recall"][i]),
            "f1": float(stats["f1"][i]),
        }
        for i, name in enumerate(class_names)
    ]


def confusion_table(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Every (true, predicted) cell of ``cm``, zeros included, as written to ``confusion`` tables.

    Args:
      cm: int [C, C] confusion matrix (rows true, columns predicted).
      class_names: C names.

    Returns:
      ``[{"true_label", "predicted_label", "true_class", "predicted_class", "count"}, ...]``,
      C * C rows in row-major order, plain Python numbers.
    """
    n = len(class_names)
    return [
        {
            "true_label": t,
            "predicted_label": p,
            "true_class": class_names[t],
            "predicted_class": class_names[p],
            "count": int(cm[t, p]),
        }
        for t in range(n)
        for p in range(n)
    ]
