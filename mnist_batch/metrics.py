"""Classification metrics on integer labels (numpy only).

Shared by training (model card test metrics), scoring (per-class statistics from the
Beam confusion matrix) and evaluation.
"""

from __future__ import annotations

import numpy as np


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


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur (support > 0 or predicted at least once)."""
    stats = per_class(cm)
    present = (np.asarray(cm).sum(axis=0) + np.asarray(cm).sum(axis=1)) > 0
    return float(stats["f1"][present].mean()) if present.any() else float("nan")
