"""Plots and a self-contained HTML report from scoring, evaluation or training outputs.

* :mod:`~mnist_batch.report.plots` -- plot functions (numpy in, PNG path out) and HTML helpers.
* :mod:`~mnist_batch.report.inputs` -- reads a scoring or evaluation folder (Parquet + JSON only,
  so outputs copied from any runner work) into one :class:`ReportData` per model.
* :mod:`~mnist_batch.report.build` -- :func:`build_report` (``mnist-batch report OUT``) and
  :func:`build_run_report` (learning curves of a training run dir).
"""

from __future__ import annotations

from mnist_batch.report.build import build_report, build_run_report
from mnist_batch.report.inputs import ReportData, ReportError, read_output
from mnist_batch.report.plots import (
    html_page,
    html_table,
    plot_confidence_histogram,
    plot_confusion,
    plot_image_grid,
    plot_learning_curves,
    plot_per_class,
    plot_reliability,
    png_data_uri,
    read_history_csv,
)

__all__ = [
    "ReportData",
    "ReportError",
    "build_report",
    "build_run_report",
    "html_page",
    "html_table",
    "plot_confidence_histogram",
    "plot_confusion",
    "plot_image_grid",
    "plot_learning_curves",
    "plot_per_class",
    "plot_reliability",
    "png_data_uri",
    "read_history_csv",
    "read_output",
]
