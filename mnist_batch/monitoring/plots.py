"""The monitor's trend plots over every run, as PNG files (``monitor.html`` embeds them).

The x axis is time: each run sits at its commit time (UTC, from the runs table; dates as ticks),
so a gap of twelve days looks like one; the volume plot names each run above it (thinned past a
few dozen runs). A dashed line marks every run whose model differs from the run before it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib
import matplotlib.dates as mdates
import matplotlib.ticker
import matplotlib.transforms

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from mnist_batch.curves import save_figure
from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.monitoring.checks import Thresholds
from mnist_batch.monitoring.collect import RunRecord

DPI = 100
MAX_BARS = 150
"""Past this many runs, stacked bars become stacked areas (a bar per run would be sub-pixel)."""


def run_times(records: Sequence[RunRecord]) -> np.ndarray:
    """Each run's commit time (:attr:`RunRecord.time`, UTC) as a matplotlib date number (days)."""
    return np.array([mdates.date2num(r.time) for r in records], np.float64)


DEFAULT_GAP = 1.0
"""The spacing (days) assumed when runs give none (a single run, or all committed at one instant)."""


def neighbour_gaps(x: np.ndarray) -> np.ndarray:
    """Each run's distance (days) to its nearest neighbour in time (``inf`` for a lone run); ``x`` sorted."""
    gaps = np.diff(x)
    return np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])


def typical_gap(x: np.ndarray) -> float:
    """The median distance from a run to its nearest neighbour (days): the nightly spacing, whatever long
    gaps there are; :data:`DEFAULT_GAP` when the runs give none."""
    near = neighbour_gaps(x)
    near = near[np.isfinite(near) & (near > 0)]
    return float(np.median(near)) if near.size else DEFAULT_GAP


def bar_widths(x: np.ndarray) -> np.ndarray:
    """A bar per run, 80 % of the typical gap wide and never reaching into a neighbour's (a lone run
    after a long gap keeps the usual width: a wide bar would look like a long run)."""
    typical = typical_gap(x)
    return 0.8 * np.clip(neighbour_gaps(x), 0.1 * typical, typical)


def _x_axis(ax, records: Sequence[RunRecord], x: np.ndarray, *, run_ids: bool = False) -> None:
    """Commit time on x (dates as ticks); ``run_ids``: each run's id above the axes (thinned past 30 runs)."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    pad = 0.6 * typical_gap(x)
    ax.set_xlim(x.min() - pad, x.max() + pad)
    ax.set_xlabel("commit time (UTC)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    if run_ids:
        step = max(1, int(np.ceil(len(records) / 30)))
        top = ax.secondary_xaxis("top")
        top.set_xticks(x[::step], [r.run for r in records[::step]], fontsize=7, rotation=60, ha="left")
        top.tick_params(axis="x", length=2, pad=1)  # whole run ids: a cut id cannot be found again
    above = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    middle = (x.min() + x.max()) / 2
    for i in model_changes(records):
        at = (x[i - 1] + x[i]) / 2
        ax.axvline(at, color="#6a1b9a", linestyle="--", linewidth=1.2)
        y, va = (0.98, "top") if run_ids else (1.0, "bottom")  # under the run ids, in the headroom
        ha = "left" if at <= middle else "right"  # toward the middle: never over the legend or colour bar
        ax.text(at, y, f" model \u2192 {records[i].model_label} ", transform=above, color="#6a1b9a",
                fontsize=7, ha=ha, va=va, bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1})  # fmt: skip
    if model_changes(records) and not run_ids:
        ax.set_title(ax.get_title(), pad=14)  # room for the model labels above the axes


def _legend_outside(ax, title: str | None = None) -> None:
    """The legend right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title=title, borderaxespad=0)


def _headroom(ax, top: float, floor: float = 0.0) -> None:
    """y from ``floor`` to 15 % above the highest value (so the top bar or point is not on the frame)."""
    ax.set_ylim(floor, floor + max(top - floor, 1e-9) * 1.15)


def model_changes(records: Sequence[RunRecord]) -> list[int]:
    """Indices of the runs whose model differs from the previous readable run's (unreadable runs skipped)."""
    out, last = [], None
    for i, record in enumerate(records):
        if record.unreadable:
            continue
        if last is not None and record.model_id != records[last].model_id:
            out.append(i)
        last = i
    return out


def _figure(records: Sequence[RunRecord], height: float = 3.4):
    width = min(14.0, max(8.0, 0.25 * len(records) + 4))
    return plt.subplots(figsize=(width, height))


def _stacked(ax, x: np.ndarray, layers: np.ndarray, labels: Sequence[str], colours=None) -> None:
    """layers: [K, N] stacked over x (commit times; bars for few runs, areas for many)."""
    bottom = np.zeros(layers.shape[1])
    colours = colours or [None] * len(labels)
    if len(x) <= MAX_BARS:
        width = bar_widths(x)
        for layer, label, colour in zip(layers, labels, colours, strict=True):
            ax.bar(x, layer, bottom=bottom, width=width, label=label, color=colour)
            bottom = bottom + layer
    else:
        ax.stackplot(x, layers, labels=labels, colors=[c for c in colours if c] or None, step="mid")


def plot_volume(records: Sequence[RunRecord], path: pathlib.Path) -> pathlib.Path:
    counts = [r.counts for r in records]
    layers = np.array([[c.get(k, 0) for c in counts] for k in ("scored", "errors", "skipped")], np.float64)
    fig, ax = _figure(records, 3.9)
    x = run_times(records)
    _stacked(ax, x, layers, ["scored", "errors", "skipped"], ["#1565c0", "#c62828", "#9e9e9e"])
    ax.set_ylabel("files")
    ax.set_title("Volume per run: files scored, failed (errors) and skipped (run ids above)", pad=8)
    _headroom(ax, max(1.0, float(layers.sum(axis=0).max()) if layers.size else 1.0))
    _legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    _x_axis(ax, records, x, run_ids=True)
    return save_figure(fig, path, dpi=DPI)


def plot_rates(records: Sequence[RunRecord], thresholds: Thresholds, path: pathlib.Path) -> pathlib.Path:
    x = run_times(records)
    fig, ax = _figure(records)

    def series(values):  # percent: rates of a few % are read on their own scale, not on 0..1
        return np.array([np.nan if v is None else 100 * v for v in values], np.float64)

    marker = "o" if len(records) <= MAX_BARS else None
    lines = [
        (series([r.error_rate for r in records]), "#c62828", "o", "error rate (of matched)"),
        (series([r.low_confidence_rate for r in records]), "#ef6c00", "s", "low-confidence rate (of scored)"),
        (series([r.blank_rate for r in records]), "#616161", "^", "blank rate (of scored)"),
        (series([r.not_digit_rate for r in records]), "#6a1b9a", "D", "not-a-digit rate (of scored)"),
    ]
    for values, colour, shape, label in lines:  # distinct markers: equal lines stay visible
        ax.plot(x, values, marker=shape if marker else None, color=colour, label=label, alpha=0.85)
    top = max([float(np.nanmax(v)) for v, *_ in lines if np.isfinite(v).any()] + [1.0])
    _headroom(ax, top)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=100))
    ax.set_ylabel("rate (%)")
    ax.set_title(
        f"Error, low-confidence, blank and not-a-digit rates (alert: error +{thresholds.error_rate_rise:.0%}, "
        f"low confidence +{thresholds.low_confidence_rise:.0%}, blank +{thresholds.blank_rise:.0%}, "
        f"not a digit +{thresholds.not_digit_rise:.0%} over the reference)"
    )
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    _x_axis(ax, records, x)
    return save_figure(fig, path, dpi=DPI)


def plot_class_mix(records: Sequence[RunRecord], path: pathlib.Path) -> pathlib.Path:
    width = max(len(r.predicted_class_counts) for r in records)
    counts = np.array([np.pad(r.predicted_class_counts, (0, width - len(r.predicted_class_counts))) for r in records])
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, np.float64), where=totals > 0).T
    names = next(
        (r.class_names for r in reversed(records) if len(r.class_names) == width), [str(i) for i in range(width)]
    )
    colours = [plt.get_cmap("tab10" if width <= 10 else "tab20")(i % 20) for i in range(width)]
    fig, ax = _figure(records, 3.8)
    x = run_times(records)
    _stacked(ax, x, shares, names, colours)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of scored")
    ax.set_title("Predicted class mix per run")
    _legend_outside(ax, "class")
    _x_axis(ax, records, x)
    return save_figure(fig, path, dpi=DPI)


def run_columns(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ma.MaskedArray]:
    """Cell edges on the time axis and the [bins, cells] values of a heat map with one column per run,
    as wide as its bar (:func:`bar_widths`), with empty (masked) cells between runs."""
    half = np.minimum(bar_widths(x) / 2, 0.45 * neighbour_gaps(x))  # cells never overlap: edges keep their order
    edges = np.column_stack([x - half, x + half]).reshape(-1)
    columns = np.full((values.shape[0], 2 * len(x) - 1), np.nan)
    columns[:, ::2] = values
    return edges, np.ma.masked_invalid(columns)


def plot_confidence(records: Sequence[RunRecord], path: pathlib.Path) -> pathlib.Path:
    """Each run's confidence distribution as a column (share of its scored images per bin)."""
    hist = np.array([r.confidence_histogram for r in records], np.float64)
    totals = hist.sum(axis=1, keepdims=True)
    shares = np.divide(hist, totals, out=np.zeros(hist.shape), where=totals > 0).T
    fig, ax = _figure(records, 3.8)
    x = run_times(records)
    shares[:, totals[:, 0] == 0] = np.nan  # a run with nothing scored (or an unreadable summary): an empty column
    edges, columns = run_columns(x, np.sqrt(shares))
    image = ax.pcolormesh(edges, np.linspace(0.0, 1.0, shares.shape[0] + 1), columns, cmap="magma_r", vmin=0, vmax=1)
    mean = [np.nan if r.summary.get("mean_confidence") is None else r.summary["mean_confidence"] for r in records]
    ax.plot(x, mean, color="#00bcd4", marker="o" if len(records) <= MAX_BARS else None, label="mean")
    cbar = fig.colorbar(image, ax=ax, pad=0.01)
    cbar.set_label("share of run (sqrt scale)")
    cbar.set_ticks(np.sqrt([0, 0.05, 0.25, 0.5, 1.0]), labels=["0", "5%", "25%", "50%", "100%"])
    ax.set_ylabel(f"top-class confidence ({CONFIDENCE_BINS} bins)")
    ax.set_title("Confidence distribution per run")
    ax.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8, borderaxespad=0)  # right of the colour bar
    _x_axis(ax, records, x)
    return save_figure(fig, path, dpi=DPI)


def plot_psi(records: Sequence[RunRecord], results, thresholds: Thresholds, path: pathlib.Path) -> pathlib.Path:
    x = run_times(records)
    fig, ax = _figure(records)
    marker = "o" if len(records) <= MAX_BARS else None
    top = thresholds.psi_alert
    for check, colour, label in (("class_mix", "#1565c0", "class mix"), ("confidence", "#ef6c00", "confidence")):
        values = [next(c.value for c in checks if c.check == check) for checks in results]
        ax.plot(x, [np.nan if v is None else v for v in values], marker=marker, color=colour, label=f"PSI {label}")
        top = max([top, *(v for v in values if v is not None)])
    ax.axhline(thresholds.psi_warn, color="#b26a00", linestyle=":", label=f"warn {thresholds.psi_warn:g}")
    ax.axhline(thresholds.psi_alert, color="#c62828", linestyle=":", label=f"alert {thresholds.psi_alert:g}")
    _headroom(ax, top)  # linear: a PSI of 4 or 6 is read off the axis (symlog ticks 0, 0.1, 1 could not place it)
    ax.set_ylabel("PSI vs reference")
    ax.set_title("Drift: population stability index of each run against its reference")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    _x_axis(ax, records, x)
    return save_figure(fig, path, dpi=DPI)


def plot_quality(records: Sequence[RunRecord], path: pathlib.Path) -> pathlib.Path | None:
    acc = [r.summary.get("accuracy") for r in records]
    if all(a is None for a in acc):
        return None
    f1 = [r.summary.get("macro_f1") for r in records]
    x = run_times(records)
    fig, ax = _figure(records, 3.0)
    marker = "o" if len(records) <= MAX_BARS else None
    ax.plot(x, [np.nan if a is None else a for a in acc], marker="o" if marker else None, label="accuracy")
    ax.plot(x, [np.nan if a is None else a for a in f1], marker="s" if marker else None, label="macro-F1", alpha=0.8)
    low = min(float(v) for v in [*acc, *f1] if v is not None)
    floor = max(0.0, np.floor((low - 0.02) * 20) / 20)  # zoomed to the data: 0.95..1 is not squashed on the frame
    ax.set_ylim(floor, 1.0 + (1.0 - floor) * 0.08)
    ax.set_title("Accuracy and macro-F1 (runs with labels; macro over the classes present)")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    _x_axis(ax, records, x)
    return save_figure(fig, path, dpi=DPI)


def write_plots(
    records: Sequence[RunRecord], results, thresholds: Thresholds, folder: pathlib.Path
) -> dict[str, pathlib.Path | None]:
    if not records:
        return {}
    return {
        "volume": plot_volume(records, folder / "volume.png"),
        "rates": plot_rates(records, thresholds, folder / "rates.png"),
        "psi": plot_psi(records, results, thresholds, folder / "psi.png"),
        "class_mix": plot_class_mix(records, folder / "class_mix.png"),
        "confidence": plot_confidence(records, folder / "confidence.png"),
        "quality": plot_quality(records, folder / "quality.png"),
    }
