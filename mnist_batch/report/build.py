"""``build_report(out_dir)``: PNGs and a self-contained ``report.html`` from an output folder."""

from __future__ import annotations

import html
import pathlib
import re

import numpy as np

from mnist_batch.report import plots
from mnist_batch.report.inputs import ReportData, ReportError, check_consistent, read_output, row_image

GRID_SIZE = 32
"""Images per grid (misclassified, least confident)."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def misclassified_rows(data: ReportData, limit: int = GRID_SIZE) -> np.ndarray:
    """Indices of labelled, wrong predictions, most confident mistakes first."""
    wrong = np.flatnonzero(data.labelled & (data.predicted != data.labels))
    return wrong[np.argsort(-data.confidence[wrong], kind="stable")][:limit]


def least_confident_rows(data: ReportData, limit: int = GRID_SIZE) -> np.ndarray:
    """Indices of the lowest-confidence predictions, lowest first."""
    return np.argsort(data.confidence, kind="stable")[:limit]


def caption(data: ReportData, i: int) -> str:
    """``"true 7 → 1 (0.62)"``, or ``"→ 1 (0.62)"`` when the true label is unknown."""
    names = data.class_names
    pred = f"{names[data.predicted[i]]} ({data.confidence[i]:.2f})"
    return f"true {names[data.labels[i]]} → {pred}" if data.labels[i] >= 0 else f"→ {pred}"


def _grid(data: ReportData, rows: np.ndarray, path: pathlib.Path, title: str) -> pathlib.Path:
    images, titles = [], []
    for i in rows:
        image = row_image(data, int(i))
        images.append(image if image is not None else np.zeros((28, 28), np.uint8))
        titles.append(caption(data, int(i)))
    return plots.plot_image_grid(images, titles, path, title=title)


def model_plots(data: ReportData, dest: pathlib.Path, prefix: str) -> dict[str, pathlib.Path]:
    """Writes one model's PNGs; returns ``{kind: path}`` (kinds that need labels only with labels)."""
    written: dict[str, pathlib.Path] = {}
    labelled = data.labelled
    if labelled.any():
        check_consistent(data)
        written["confusion"] = plots.plot_confusion(data.confusion, data.class_names, dest / f"{prefix}confusion.png")
        pc = data.per_class
        written["per_class"] = plots.plot_per_class(
            data.class_names, pc["precision"], pc["recall"], pc["f1"], dest / f"{prefix}per_class.png"
        )
        wrong = misclassified_rows(data)
        n_wrong = int((labelled & (data.predicted != data.labels)).sum())
        written["misclassified"] = _grid(
            data,
            wrong,
            dest / f"{prefix}misclassified.png",
            f"Misclassified: {len(wrong)} of {n_wrong}, most confident first",
        )
    written["least_confident"] = _grid(
        data, least_confident_rows(data), dest / f"{prefix}least_confident.png", "Lowest confidence"
    )
    correct = (data.predicted == data.labels)[labelled] if labelled.any() else None
    conf = data.confidence[labelled] if labelled.any() else data.confidence
    written["confidence"] = plots.plot_confidence_histogram(conf, correct, dest / f"{prefix}confidence.png")
    if labelled.any():
        written["reliability"] = plots.plot_reliability(conf, correct, dest / f"{prefix}reliability.png")
    return written


SECTION_TITLES = {
    "confusion": "Confusion matrix",
    "per_class": "Per-class precision, recall, F1",
    "misclassified": "Misclassified images",
    "least_confident": "Lowest-confidence images",
    "confidence": "Confidence histogram",
    "reliability": "Reliability diagram",
}


def _model_sections(data: ReportData, pngs: dict[str, pathlib.Path]) -> list[tuple[str, str]]:
    head = f"{data.name}: " if data.name else ""
    sections = [(f"{head}summary", plots.html_table(["", "value"], data.headline))]
    pc = data.per_class
    if data.labelled.any():  # unlabelled inputs have no per-class statistics
        rows = [
            (name, int(pc["support"][i]), float(pc["precision"][i]), float(pc["recall"][i]), float(pc["f1"][i]))
            for i, name in enumerate(data.class_names)
        ]
        table = plots.html_table(["class", "support", "precision", "recall", "F1"], rows)
        sections.append((f"{head}per class", table))
    for kind, path in pngs.items():
        img = f"<img alt='{kind}' src='{plots.png_data_uri(path)}'>"
        sections.append((f"{head}{SECTION_TITLES[kind]}", f"{img}<p><code>{html.escape(path.name)}</code></p>"))
    if data.errors:
        shown = data.errors[:50]
        sections.append(
            (
                f"{head}unreadable files ({len(data.errors)})",
                plots.html_table(
                    ["path", "stage", "error", "message"],
                    [(e["path"], e["stage"], e["error_type"], e["message"]) for e in shown],
                ),
            )
        )
    return sections


def build_report(out_dir: str | pathlib.Path, dest: str | pathlib.Path | None = None) -> pathlib.Path:
    """Writes the PNGs and ``report.html`` for a scoring or evaluation folder.

    Args:
      out_dir: the folder a scoring run or ``mnist-batch evaluate`` wrote.
      dest: where to write (default ``out_dir``).

    Returns:
      Path of ``report.html``. PNGs are named ``confusion.png``, ``per_class.png``,
      ``misclassified.png``, ``least_confident.png``, ``confidence.png``, ``reliability.png``
      (prefixed ``<model>_`` when an evaluation folder holds several models).

    Raises:
      ReportError: not an output folder, or predictions that contradict its confusion table.
    """
    out_dir = pathlib.Path(out_dir)
    dest = pathlib.Path(dest) if dest else out_dir
    kind, _, models = read_output(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, str]] = []
    if kind == "evaluation" and (out_dir / "comparison.md").is_file() and len(models) > 1:
        sections.append(("Comparison", f"<pre>{html.escape((out_dir / 'comparison.md').read_text())}</pre>"))
    for data in models:
        prefix = f"{_slug(data.name)}_" if len(models) > 1 else ""
        sections += _model_sections(data, model_plots(data, dest, prefix))
    if not models:
        raise ReportError(f"{out_dir}: no model results found")
    title = f"mnist-batch {kind} report: {out_dir.name}"
    page = dest / "report.html"
    page.write_text(plots.html_page(title, sections), encoding="utf-8")
    return page


def build_run_report(run_dir: str | pathlib.Path, dest: str | pathlib.Path | None = None) -> pathlib.Path:
    """Learning curves of a training run dir (``history.csv``) as a PNG and ``report.html``.

    Raises:
      ReportError: no ``history.csv`` in ``run_dir``, or one with no epochs.
    """
    run_dir = pathlib.Path(run_dir)
    dest = pathlib.Path(dest) if dest else run_dir
    history_path = run_dir / "history.csv"
    if not history_path.is_file():
        raise ReportError(f"{run_dir}: no history.csv (not a training run dir made with --run-dir)")
    try:
        history = plots.read_history_csv(history_path)
    except (ValueError, KeyError) as exc:
        raise ReportError(f"{history_path}: {exc}") from exc
    png = plots.plot_learning_curves(history, dest / "learning_curve.png")
    rows = [
        tuple([int(e) + 1] + [history[k][i] for k in history if k != "epoch"])
        for i, e in enumerate(history.get("epoch", range(len(next(iter(history.values()))))))
    ]
    table = plots.html_table(["epoch", *[k for k in history if k != "epoch"]], rows)
    page = dest / "report.html"
    sections = [("Learning curves", f"<img alt='learning curve' src='{plots.png_data_uri(png)}'>"), ("History", table)]
    page.write_text(plots.html_page(f"mnist-batch training run: {run_dir.name}", sections), encoding="utf-8")
    return page
