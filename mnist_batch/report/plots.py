"""Plot functions and HTML helpers of the report. Matplotlib runs on the Agg backend: no display needed.

Plot functions take plain numpy data and a destination path, and return the path, so
they are usable (and tested) without any output folder.
"""

from __future__ import annotations

import base64
import html
import pathlib
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from mnist_batch import metrics
from mnist_batch.curves import (  # noqa: F401 -- the report draws the learning curves too
    plot_learning_curves,
    read_history_csv,
    save_figure,
)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: pathlib.Path) -> pathlib.Path:
    """Heatmap of a confusion matrix with the count in every cell.

    Args:
      cm: int [C, C], rows true class, columns predicted class.
      class_names: C names.
      path: PNG to write.
    """
    cm = np.asarray(cm)
    n = cm.shape[0]
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    # Log-ish colour scale so off-diagonal errors stay visible next to large diagonals.
    shown = np.log1p(cm)
    ax.imshow(shown, cmap="Blues")
    threshold = shown.max() * 0.6 if shown.size else 0
    for t in range(n):
        for p in range(n):
            ax.text(
                p,
                t,
                f"{int(cm[t, p])}",
                ha="center",
                va="center",
                fontsize=8 if n <= 12 else 6,
                color="white" if shown[t, p] > threshold else ("#b00" if t != p and cm[t, p] else "black"),
            )
    ax.set_xticks(range(n), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(cm.sum())
    acc = metrics.accuracy(cm) if total else float("nan")
    ax.set_title(f"Confusion matrix ({total:,} labelled images, accuracy {acc:.2%})")
    return save_figure(fig, path)


def plot_per_class(
    class_names: Sequence[str], precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, path: pathlib.Path
) -> pathlib.Path:
    """Grouped bars of per-class precision, recall and F1 (y axis zoomed to the lowest value)."""
    x = np.arange(len(class_names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(class_names) + 2), 3.8))
    for offset, values, label in ((-0.27, precision, "precision"), (0, recall, "recall"), (0.27, f1, "F1")):
        ax.bar(x + offset, values, width=0.27, label=label)
    low = float(np.nanmin(np.concatenate([precision, recall, f1]))) if len(x) else 0.0
    bottom = max(0.0, round(low - 0.05, 2))
    ax.set_ylim(bottom, 1.0)
    ax.set_xticks(x, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_xlabel("class")
    ax.set_ylabel("score" if bottom == 0 else f"score (axis starts at {bottom:.2f})")
    ax.set_title("Per-class precision, recall and F1", pad=24)
    # Above the axes, so it never covers a bar.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], path: pathlib.Path, *, title: str, columns: int = 8
) -> pathlib.Path:
    """A grid of grayscale images with a caption each (e.g. ``"true 7 → 1 (0.62)"``).

    Args:
      images: uint8 or float arrays [H, W] (any size; each is shown as is).
      titles: one caption per image.
      path: PNG to write.
      title: figure title.
      columns: images per row.
    """
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.35, rows * 1.55 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(caption, fontsize=7)
    if n == 0:
        axes[0, 0].text(0, 0.5, "none", fontsize=12)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_confidence_histogram(confidence: np.ndarray, correct: np.ndarray | None, path: pathlib.Path) -> pathlib.Path:
    """Histogram of top-class confidence, split into right and wrong when labels exist."""
    confidence = np.asarray(confidence, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(0, 1, 41)
    if correct is None:
        ax.hist(confidence, bins=bins, color="#4878b0")
    else:
        correct = np.asarray(correct, dtype=bool)
        ax.hist(
            [confidence[correct], confidence[~correct]],
            bins=bins,
            stacked=True,
            label=["right", "wrong"],
            color=["#4878b0", "#d0473c"],
        )
        ax.legend(loc="upper left")
    ax.set_yscale("log")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("images (log scale)")
    ax.set_title(f"Confidence of {confidence.size:,} predictions")
    return save_figure(fig, path)


def plot_risk_coverage(curve: dict[str, list], path: pathlib.Path, mark: float | None = None) -> pathlib.Path:
    """Risk (error rate of the answers kept) against coverage (share kept) as the review threshold moves.

    Args:
      curve: :func:`mnist_batch.trust.risk_coverage`'s ``threshold``, ``coverage``, ``risk`` lists
        (images flagged not a digit are never kept).
      mark: the run's review threshold, drawn as its operating point when the curve holds it.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    coverage, risk = 100 * np.asarray(curve["coverage"]), 100 * np.asarray(curve["risk"])
    ax.plot(coverage, risk, "o-", color="#1976d2", ms=4)
    for t, x, y in zip(curve["threshold"], coverage, risk, strict=True):
        ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=6)
    if mark is not None and float(mark) in curve["threshold"]:
        i = curve["threshold"].index(float(mark))
        label = f"this run: review below {mark:g} ({coverage[i]:.1f} % kept, {risk[i]:.2f} % of them wrong)"
        ax.plot([coverage[i]], [risk[i]], "o", color="#d32f2f", ms=8, label=label)
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("coverage: answers kept (%)")
    ax.set_ylabel("risk: wrong among those kept (%)")
    ax.set_title("Risk vs coverage per review threshold (labels: threshold)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reliability(confidence: np.ndarray, correct: np.ndarray, path: pathlib.Path, n_bins: int = 15) -> pathlib.Path:
    """Reliability diagram: accuracy per confidence bin, with the image count of each bin and the ECE.

    Bars are the accuracy of each bin (drawn over the bin's width); dots put that accuracy at
    the bin's mean confidence, so a dot on the diagonal is a well calibrated bin.
    """
    bins = metrics.reliability_bins(confidence, correct, n_bins)
    ece = metrics.expected_calibration_error(confidence, correct, n_bins)
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    centers = (bins["lower"] + bins["upper"]) / 2
    filled = bins["count"] > 0
    acc = bins["accuracy"][filled]
    ax.bar(centers[filled], acc, width=1 / n_bins, edgecolor="black", alpha=0.8, label="accuracy of the bin")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.plot(
        bins["confidence"][filled],
        acc,
        "o",
        color="#d0473c",
        ms=4,
        clip_on=False,
        label="accuracy at the bin's mean confidence",
    )
    for x, y, n in zip(centers[filled], acc, bins["count"][filled], strict=True):
        ax.annotate(f"{int(n):,}", (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({n_bins} bins, images per bin above the bars), ECE {ece:.4f}", fontsize=9)
    # Below the axes: inside, it would cover the low-confidence bins of a weak model.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, fontsize=7, frameon=False)
    return save_figure(fig, path)


def png_data_uri(path: pathlib.Path) -> str:
    """The PNG at ``path`` as a ``data:`` URI, for a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A minimal self-contained HTML page; ``sections`` are (heading, HTML body) pairs."""
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}"
        "td:first-child,th:first-child,td.text{text-align:left}td:first-child{white-space:nowrap}"
        "td.text{overflow-wrap:break-word;word-break:normal;hyphens:none;max-width:40em}"
        ".note{color:#555;font-size:.9em}"
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 .2em}"
        ".side{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1em;align-items:start}"
        "figure{margin:0}figcaption{font-weight:600;margin:.2em 0}"
    )
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
    )


def format_number(v: float) -> str:
    """A number as a person reads it: ``1,234``, ``469.6``, ``6.02``, ``0.9945``, ``3.2e-05``."""
    if isinstance(v, int):
        return f"{v:,}"
    if v != v:  # NaN
        return "n/a"
    size = abs(v)
    if size >= 100:
        return f"{v:,.1f}"
    if size > 1:
        return f"{v:.2f}"
    if size and size < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4f}"


def html_side_by_side(items: Sequence[tuple[str, str]]) -> str:
    """Figures next to each other (wrapping on narrow screens); ``items`` are (caption, HTML) pairs."""
    figures = "".join(f"<figure><figcaption>{html.escape(c)}</figcaption>{body}</figure>" for c, body in items)
    return f"<div class='side'>{figures}</div>"


LONG_TOKEN = re.compile(r"[0-9a-fA-F]{24,}")
"""A hash (model ids, sha256): no word to keep whole, and too long to fit a cell unbroken."""


def _breakable(m: re.Match) -> str:
    token = m.group(0)
    return "<wbr>".join(token[i : i + 16] for i in range(0, len(token), 16))


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; numbers are formatted by :func:`format_number` (right-aligned), other values escaped
    and left-aligned (class ``text`` past the first column), paths breakable after each ``/`` only."""

    def cell(v: object, first: bool) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"<td>{format_number(v)}</td>"
        if v == "n/a":  # a missing number: aligned with the numbers
            return "<td>n/a</td>"
        text = LONG_TOKEN.sub(_breakable, html.escape("" if v is None else str(v))).replace("/", "/<wbr>")
        return f"<td>{text}</td>" if first else f"<td class='text'>{text}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v, i == 0) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
