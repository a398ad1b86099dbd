"""``evaluate --trust``: how far a model's answers can be trusted, on sets the tool makes itself.

From any labelled test split it builds damaged copies (:data:`mnist_batch.synthetic.CORRUPTIONS`)
and generated non-digits (:data:`mnist_batch.synthetic.NEGATIVE_KINDS`, evaluation fonts and
seeds no training or threshold ever used), plus Fashion-MNIST's test images when the machine
has them (never trained or tuned on). Per set: accuracy (digit sets), the share flagged
(``low_confidence`` or ``not_digit``) and the share wrong and unflagged -- for a non-digit every
unflagged answer is wrong. Written as ``trust.parquet``, ``trust.md`` and ``trust.png``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_batch import synthetic, trust

EVALUATION_SEED = 7_000_001
"""Seed of the trust sets: neither training's (``--seed``) nor the threshold's (seed + 1,000,003)."""

NEGATIVES_PER_KIND = 1_000
FASHION_IMAGES = 2_000
NON_DIGIT_NAMES = {"noise": "noise field", "blank": "empty box", "glyphs": "letters, symbols"}
"""Set names of the generated non-digits where the kind's own name would be ambiguous (``noise``
is also a corruption)."""


@dataclasses.dataclass(frozen=True)
class TrustSet:
    """One set of the trust report: images, and their labels (-1: not a digit)."""

    name: str
    kind: str
    """``clean``, ``corruption``, ``non-digit``."""
    images: np.ndarray
    labels: np.ndarray


def trust_sets(images: np.ndarray, labels: np.ndarray, *, fashion: np.ndarray | None = None) -> list[TrustSet]:
    """The clean split, each corruption of it, each generated non-digit kind (and Fashion-MNIST).

    Args:
      images: uint8 [N, 28, 28] labelled digits; labels: int [N].
      fashion: uint8 [M, 28, 28] Fashion-MNIST test images, or None.
    """
    labels = np.asarray(labels, np.int64)
    sets = [TrustSet("clean", "clean", images, labels)]
    for i, kind in enumerate(synthetic.CORRUPTIONS):
        sets.append(TrustSet(kind, "corruption", synthetic.corrupt(images, kind, seed=EVALUATION_SEED + i), labels))
    for i, kind in enumerate(synthetic.NEGATIVE_KINDS):
        negatives = synthetic.negatives(
            NEGATIVES_PER_KIND, seed=EVALUATION_SEED + 100 + i, role="evaluation", kinds=(kind,)
        )
        name = NON_DIGIT_NAMES.get(kind, kind)
        sets.append(TrustSet(name, "non-digit", negatives, np.full(len(negatives), -1)))
    if fashion is not None and len(fashion):
        sets.append(TrustSet("fashion-mnist", "non-digit", fashion, np.full(len(fashion), -1)))
    return sets


def fashion_images(limit: int = FASHION_IMAGES) -> np.ndarray | None:
    """The first ``limit`` Fashion-MNIST test images (evenly spaced), or None when not installed."""
    from mnist_batch.data.fashion import FASHION_MNIST_DIR, load_fashion_mnist

    if not FASHION_MNIST_DIR.is_dir():
        return None
    try:
        test = load_fashion_mnist().split("test")
    except Exception:  # noqa: BLE001 -- a broken install only leaves the set out
        return None
    index = np.linspace(0, len(test) - 1, num=min(limit, len(test))).round().astype(np.int64)
    return test.images[index]


def measure(
    predict: Callable[[np.ndarray], np.ndarray],
    sets: list[TrustSet],
    num_classes: int,
    *,
    review_threshold: float,
    not_digit_threshold: float | None,
) -> list[dict[str, Any]]:
    """One row per set: ``set, kind, images, accuracy, flagged, not_digit, low_confidence, wrong_unflagged``.

    Args:
      predict: uint8 [B, 28, 28] -> the model's outputs [B, C] or [B, C+1].
      sets: from :func:`trust_sets`.
      num_classes: C.
      review_threshold: below this confidence a row is ``low_confidence``.
      not_digit_threshold: the run's threshold (None: the model has no check).
    """
    rows = []
    for s in sets:
        probs, scores = trust.split_outputs(predict(s.images), num_classes)
        confidence = probs.max(axis=1)
        low = confidence < review_threshold
        not_digit = trust.flag(scores, not_digit_threshold)
        flagged = low | (not_digit if not_digit is not None else False)
        correct = probs.argmax(axis=1) == s.labels  # never for a non-digit (label -1)
        rows.append(
            {
                "set": s.name,
                "kind": s.kind,
                "images": len(s.labels),
                "accuracy": float(correct.mean()) if s.kind != "non-digit" else None,
                "flagged": float(flagged.mean()),
                "not_digit": float(not_digit.mean()) if not_digit is not None else None,
                "low_confidence": float(low.mean()),
                "wrong_unflagged": float((~correct & ~flagged).mean()),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], model: str, thresholds: tuple[float, float | None]) -> str:
    """The trust table as Markdown."""
    review, not_digit = thresholds
    check = f"not_digit_score >= {not_digit:g}" if not_digit is not None else "none (the card has no threshold)"
    lines = [
        f"# Trust report: {model}",
        "",
        f"Flagged: confidence < {review:g} (low_confidence) or not a digit ({check}).",
        "",
        "| set | kind | images | accuracy | flagged | not a digit | wrong and unflagged |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = "—" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        nd = "—" if r["not_digit"] is None else f"{r['not_digit']:.2%}"
        lines.append(
            f"| {r['set']} | {r['kind']} | {r['images']:,} | {acc} | {r['flagged']:.2%} | {nd} "
            f"| {r['wrong_unflagged']:.2%} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: pathlib.Path, title: str) -> pathlib.Path:
    """Bars per set: flagged, and wrong and unflagged (the answers nobody would catch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["set"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows)), 3.6))
    ax.bar(x - 0.2, [r["flagged"] for r in rows], 0.4, label="flagged", color="#1976d2")
    wrong = [r["wrong_unflagged"] for r in rows]
    ax.bar(x + 0.2, wrong, 0.4, label="wrong and unflagged", color="#d32f2f")
    for i, w in enumerate(wrong):  # the share that matters, readable however small
        ax.annotate(f"{w:.1%}", (i + 0.2, w), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the set")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
