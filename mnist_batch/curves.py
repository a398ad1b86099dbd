"""Figures as PNG files (:func:`save_figure`), and a training run's learning curves: ``history.csv``
read back, loss / accuracy per epoch.

Base layer, so that each side draws without importing the other: training draws the curves into its
run dir, ``mnist-batch report RUN_DIR`` draws the same plot, and the report and the monitor save
their figures here. Matplotlib runs on Agg.
"""

from __future__ import annotations

import csv
import pathlib

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

DPI = 110


def save_figure(fig, path: pathlib.Path, *, dpi: int = DPI) -> pathlib.Path:
    """Writes ``fig`` as a PNG (parents made), closes it, returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def read_history_csv(path: pathlib.Path) -> dict[str, list[float]]:
    """Reads a Keras ``CSVLogger`` file into ``{column: values}``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no epochs recorded")
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def plot_learning_curves(history: dict[str, list[float]], path: pathlib.Path, *, title: str = "") -> pathlib.Path:
    """Loss and accuracy per epoch, train against validation (training writes it into its run dir too).

    Args:
      history: ``{"epoch": [1, 2, ...], "loss": [...], "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}``
        (missing series are skipped).
      path: PNG to write.
      title: figure title (e.g. the model and data set).
    """
    epochs = history.get("epoch") or list(range(1, len(next(iter(history.values()))) + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            key = prefix + metric
            if key in history:
                ax.plot(epochs, history[key], style, ms=3, label="validation" if prefix else "train")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole: no 1.5
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if "val_accuracy" in history:
        best = int(np.argmax(history["val_accuracy"]))
        ax_acc.annotate(
            f"best {history['val_accuracy'][best]:.4f}",
            (epochs[best], history["val_accuracy"][best]),
            textcoords="offset points",
            xytext=(-40, -20),
            arrowprops={"arrowstyle": "->"},
        )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
