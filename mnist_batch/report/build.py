"""``build_report(out_dir)``: PNGs and a self-contained ``report.html`` from an output folder."""

from __future__ import annotations

import html
import pathlib
import re

import numpy as np

from mnist_batch.constants import COL_ERROR_TYPE, COL_MESSAGE, COL_PATH, COL_STAGE
from mnist_batch.metrics import MACRO_NOTE
from mnist_batch.report import plots
from mnist_batch.report.inputs import ReportData, ReportError, check_consistent, read_output, row_image
from mnist_batch.trust import risk_coverage

NA = "n/a"
"""A figure that does not exist (recall and F1 of a class absent from the labels; precision of one never predicted)."""
MACRO_NOTE_HTML = f"<p class='note'>Macro-F1: {MACRO_NOTE}.</p>"
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


PLOT_FILES = (
    "confusion.png",
    "per_class.png",
    "misclassified.png",
    "least_confident.png",
    "confidence.png",
    "reliability.png",
    "risk_coverage.png",
)
"""The report's PNGs of one model (``<model>_`` before each name when a folder holds several)."""
REPORT_FILE = "report.html"


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
        flags = data.not_digit[labelled] if data.not_digit is not None else None
        mark = data.review_threshold
        written["risk_coverage"] = plots.plot_risk_coverage(
            risk_coverage(conf, correct, flags, also=() if mark is None else (mark,)),
            dest / f"{prefix}risk_coverage.png",
            mark=mark,
        )
    return written


SECTION_TITLES = {
    "confusion": "Confusion matrix",
    "per_class": "Per-class precision, recall, F1",
    "misclassified": "Misclassified images",
    "least_confident": "Lowest-confidence images",
    "confidence": "Confidence histogram",
    "reliability": "Reliability diagram",
    "risk_coverage": "Risk–coverage: the review threshold's trade-off",
}


def per_class_table(data: ReportData) -> str:
    """Support, precision, recall and F1 of each class as an HTML table."""
    pc = data.per_class
    predicted = np.asarray(data.confusion).sum(axis=0)
    rows = []
    for i, name in enumerate(data.class_names):
        present = int(pc["support"][i]) > 0
        precision = float(pc["precision"][i]) if predicted[i] > 0 else NA
        rows.append(
            (name, int(pc["support"][i]), precision, *((float(pc[k][i]) if present else NA) for k in ("recall", "f1")))
        )
    return plots.html_table(["class", "support", "precision", "recall", "F1"], rows) + MACRO_NOTE_HTML


def errors_table(data: ReportData, limit: int = 50) -> str:
    """The first ``limit`` dead letters (path, stage, error, message) as an HTML table."""
    rows = [(e[COL_PATH], e[COL_STAGE], e[COL_ERROR_TYPE], e[COL_MESSAGE]) for e in data.errors[:limit]]
    return plots.html_table(["path", "stage", "error", "message"], rows)


def plot_html(path: pathlib.Path, kind: str) -> str:
    """An embedded PNG with its file name under it."""
    img = f"<img alt='{kind}' src='{plots.png_data_uri(path)}'>"
    return f"{img}<p><code>{html.escape(path.name)}</code></p>"


def model_sections(data: ReportData, pngs: dict[str, pathlib.Path]) -> list[tuple[str, str]]:
    """The sections of a one-model page: summary, per-class table, every plot, unreadable files."""
    note = MACRO_NOTE_HTML if data.labelled.any() else ""
    sections = [("Summary", plots.html_table(["figure", "value"], data.headline) + note)]
    if data.labelled.any():  # unlabelled inputs have no per-class statistics
        sections.append(("Per class", per_class_table(data)))
    sections += [(SECTION_TITLES[kind], plot_html(path, kind)) for kind, path in pngs.items()]
    if data.errors:
        sections.append((f"Unreadable files ({len(data.errors)})", errors_table(data)))
    return sections


def comparison_table(models: list[ReportData]) -> str:
    """One row per headline figure, one column per model (blank where a model has no such figure)."""
    values = [dict(m.headline) for m in models]
    for v in values:  # the full id is in each model's card; 12 characters tell models apart
        if isinstance(v.get("model_id"), str):
            v["model_id"] = v["model_id"][:12]
    labels = list(dict.fromkeys(label for m in models for label, _ in m.headline))
    rows = [(label, *(v.get(label, "") for v in values)) for label in labels]
    return plots.html_table(["figure", *(m.name for m in models)], rows)


def significance_notes(out_dir: pathlib.Path) -> str:
    """The significance sentences of ``comparison.md`` (its prose lines) as an HTML list."""
    path = out_dir / "comparison.md"
    if not path.is_file():
        return ""
    lines = [ln.strip().lstrip("-* ").strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    notes = [ln for ln in lines if ln and not ln.startswith(("|", "#"))]
    return "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else ""


def per_class_f1_table(models: list[ReportData]) -> str:
    """Support and each model's F1 per class, next to each other."""
    first = models[0]
    rows = [
        (
            name,
            int(first.per_class["support"][i]),
            *(float(m.per_class["f1"][i]) if first.per_class["support"][i] > 0 else NA for m in models),
        )
        for i, name in enumerate(first.class_names)
    ]
    return plots.html_table(["class", "support", *(f"F1 {m.name}" for m in models)], rows) + MACRO_NOTE_HTML


def side_by_side_sections(
    out_dir: pathlib.Path, models: list[ReportData], pngs: list[dict[str, pathlib.Path]]
) -> list[tuple[str, str]]:
    """The sections of a several-model page: a comparison table, then each plot with the models side by side."""
    sections = [("Comparison", comparison_table(models) + significance_notes(out_dir))]
    if all(m.labelled.any() for m in models):
        sections.append(("Per-class F1", per_class_f1_table(models)))
    for kind, title in SECTION_TITLES.items():
        items = [(m.name, plot_html(p[kind], kind)) for m, p in zip(models, pngs, strict=True) if kind in p]
        if items:
            sections.append((f"{title}, side by side", plots.html_side_by_side(items)))
    for m in models:
        if m.errors:
            sections.append((f"{m.name}: unreadable files ({len(m.errors)})", errors_table(m)))
    return sections


def build_report(out_dir: str | pathlib.Path, dest: str | pathlib.Path | None = None) -> pathlib.Path:
    """Writes the PNGs and ``report.html`` for a scoring or evaluation folder.

    Several models (an evaluation with more than one ``--model``) get one page with a
    comparison table and each plot with the models side by side.

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
    if not models:
        raise ReportError(f"{out_dir}: no model results found")
    dest.mkdir(parents=True, exist_ok=True)
    if len(models) > 1:
        pngs = [model_plots(m, dest, f"{_slug(m.name)}_") for m in models]
        sections = side_by_side_sections(out_dir, models, pngs)
        title = f"mnist-batch {kind} report: {out_dir.name} ({len(models)} models)"
    else:
        sections = model_sections(models[0], model_plots(models[0], dest, ""))
        title = f"mnist-batch {kind} report: {out_dir.name} (model {models[0].name})"
    page = dest / REPORT_FILE
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
        tuple([int(e)] + [history[k][i] for k in history if k != "epoch"])
        for i, e in enumerate(history.get("epoch", range(1, len(next(iter(history.values()))) + 1)))
    ]
    table = plots.html_table(["epoch", *[k for k in history if k != "epoch"]], rows)
    page = dest / REPORT_FILE
    sections = [("Learning curves", f"<img alt='learning curve' src='{plots.png_data_uri(png)}'>"), ("History", table)]
    page.write_text(plots.html_page(f"mnist-batch training run: {run_dir.name}", sections), encoding="utf-8")
    return page
