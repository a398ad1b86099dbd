"""``monitor.html``: the trend plots (:mod:`mnist_batch.monitoring.plots`), model changes on the
time axis, the flagged runs, the latest runs.

Self-contained: each plot is written as a PNG under ``DIR/plots/`` and embedded as a ``data:``
URI (:func:`mnist_batch.report.plots.png_data_uri`), so the page can be mailed or archived alone.
The table of latest runs gives every run's dt, id and commit time.
"""

from __future__ import annotations

import datetime
import html
import pathlib
import re
from collections.abc import Sequence

from mnist_batch.files import is_remote
from mnist_batch.monitoring.checks import ALERT, CHECKS, WARN, CheckResult, Thresholds, status_of
from mnist_batch.monitoring.collect import RunRecord
from mnist_batch.monitoring.plots import model_changes
from mnist_batch.monitoring.reference import Reference
from mnist_batch.report.plots import png_data_uri
from mnist_batch.tables import RUNS_DIR, SUMMARY_FILE, partition_parts

MAX_FLAGGED_ROWS = 200
"""The flagged-runs table shows the newest this many warnings and alerts (all are in runs.parquet)."""


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:90%}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:left;vertical-align:top;overflow-wrap:normal}td.num{text-align:right;white-space:nowrap}"
    "td.id{white-space:nowrap}th{background:#f3f3f3}.scroll{overflow-x:auto;max-width:100%}img{max-width:100%;border:1px solid #eee;margin:.4em 0}"
    ".ok{color:#2e7d32}.warn{color:#b26a00;font-weight:600}.alert{color:#c62828;font-weight:700}"
    ".unreadable{color:#6a1b9a;font-weight:700}.banner.unreadable{background:#f3e5f5}"
    ".banner{padding:.6em 1em;border-radius:4px;font-size:110%;margin:.5em 0}ul.notes{font-weight:normal;font-size:85%;color:#222;overflow-wrap:anywhere}.banner.ok{background:#e8f5e9}"
    ".banner.warn{background:#fff3e0}.banner.alert{background:#ffebee}code{background:#f5f5f5;padding:0 .2em}"
)


LOAD_CHECK = (
    "<script>window.addEventListener('load',function(){var im=document.images,n=0;"
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){n++;im[i].setAttribute('data-loaded','1');}}"
    "document.body.setAttribute('data-images-loaded',n+'/'+im.length);"
    "var d=document.documentElement,w=d.clientWidth,all=document.body.getElementsByTagName('*'),wide=[];"
    "for(var j=0;j<all.length;j++){var e=all[j];if(e.closest('.scroll')&&e.className!=='scroll')continue;"
    "if(e.getBoundingClientRect().right>w+1){wide.push(e.tagName)}}"
    "document.body.setAttribute('data-too-wide',wide.length+':'+wide.slice(0,5).join(',')+':'+(d.scrollWidth>w));"
    "});</script>"
)
"""Marks each plot that decoded (``data-loaded``) and the count on ``<body>``: a headless browser's
``--dump-dom`` then shows whether every plot rendered; ``data-too-wide`` counts the elements that
reach past the window (a table scrolls inside its own ``.scroll`` box on a narrow window) and says
whether the page itself would scroll sideways: ``0::false`` on a page that fits."""


def _e(value: object) -> str:
    return html.escape(str(value))


NUMBER = re.compile(r"^(&ndash;|[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?)$")
ID_COLUMNS = ("dt", "run", "committed (UTC)")
"""Columns never broken across lines (a date, time or run id cut in two cannot be read or searched)."""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Text left, numbers right (class ``num``), dt and run ids whole (class ``id``)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)

    def cell(column: str, content: str) -> str:
        kind = "id" if column in ID_COLUMNS else "num" if NUMBER.match(content) else ""
        return f"<td class='{kind}'>{content}</td>" if kind else f"<td>{content}</td>"

    body = "".join("<tr>" + "".join(cell(h, c) for h, c in zip(header, row, strict=True)) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def run_link(root: str, record: RunRecord) -> str:
    """The run id linked to its report (``report.html`` in its run folder once ``mnist-batch report`` made it),
    else to its ``summary.json``; plain text for a remote root (a browser cannot open gs://)."""
    if is_remote(root):
        return _e(record.run)
    folder = pathlib.Path(root).absolute().joinpath(RUNS_DIR, *partition_parts(record.dt, record.run))
    target = folder / "report.html" if (folder / "report.html").is_file() else folder / SUMMARY_FILE
    return f"<a class='run' href='{_e(target.as_uri())}'>{_e(record.run)}</a>"


def _when(record: RunRecord) -> str:
    """The run's commit time to the second, UTC (the plots' x); a dash when nothing records it."""
    when = record.committed_at
    if when is None:
        return "&ndash;"
    return _e(when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"))


def _pct(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:.1%}"


PLOT_TITLES = {
    "volume": "Volume",
    "rates": "Error and low-confidence rates",
    "psi": "Drift against the reference",
    "class_mix": "Class mix",
    "confidence": "Confidence distribution",
    "quality": "Accuracy (labelled runs)",
}
"""Plot key -> its section's heading, in page order."""
LATEST_RUNS = 50
"""Runs in the page's table of latest runs (every run is in runs.parquet)."""


def render_page(
    root: str,
    records: Sequence[RunRecord],
    refs: Sequence[Reference],
    results: Sequence[Sequence[CheckResult]],
    thresholds: Thresholds,
    plots: dict[str, pathlib.Path],
    notes: Sequence[str] = (),
    table_notes: Sequence[str] = (),
) -> str:
    """The page's HTML (plots already written): the banner, then one section after another.
    ``table_notes`` (where the runs table and the summaries disagree) are shown under the banner too."""
    sections = [
        flagged_section(records, results, root),
        *plot_sections(plots),
        model_changes_section(records),
        references_section(refs, thresholds, notes),
        latest_runs_section(records, results),
    ]
    body = (
        banner(root, records, results)
        + table_banner(table_notes)
        + "".join(f"<h2>{_e(h)}</h2>\n{content}\n" for h, content in sections)
    )
    title = "mnist_batch monitor"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1>\n{body}{LOAD_CHECK}</body></html>\n"
    )


TABLE_NOTES_SHOWN = 5
"""Runs-table notes listed under the banner (all of them are in the notes section and monitor.json)."""


def table_banner(table_notes: Sequence[str]) -> str:
    """Where the runs table and the committed summaries disagree, at the top of the page; empty when they agree."""
    if not table_notes:
        return ""
    items = "".join(f"<li>{_e(n.removeprefix('runs table: '))}</li>" for n in table_notes[:TABLE_NOTES_SHOWN])
    more = len(table_notes) - TABLE_NOTES_SHOWN
    tail = f"<li>{more:,} more in the notes below and in monitor.json</li>" if more > 0 else ""
    return (
        "<div class='banner warn'>The runs table and the committed runs do not agree:"
        f"<ul class='notes'>{items}{tail}</ul></div>"
    )


def banner(root: str, records: Sequence[RunRecord], results: Sequence[Sequence[CheckResult]]) -> str:
    """The root and its run count, and the latest run's status with what flagged it."""
    parts = [f"<p>Runs root <code>{_e(root)}</code>: {len(records):,} committed run(s).</p>"]
    if records:
        latest, checks = records[-1], results[-1]
        status = status_of(checks)
        flagged = [c for c in checks if c.status in (ALERT, WARN)]
        text = "; ".join(f"{c.check}: {_e(c.reason)}" for c in flagged) or "every check passed"
        parts.append(
            f"<p class='banner {status}'>Latest run <b>{_e(latest.run)}</b> (dt={_e(latest.dt)}, "
            f"{_e(latest.model_label)}): <b class='{status}'>{status.upper()}</b> &mdash; {text}</p>"
        )
    return "".join(parts)


def flagged_section(
    records: Sequence[RunRecord], results: Sequence[Sequence[CheckResult]], root: str = ""
) -> tuple[str, str]:
    """Every warn or alert, newest first (at most :data:`MAX_FLAGGED_ROWS`), each run linked to its report."""
    flagged_rows = [
        [
            _e(record.dt),
            run_link(root, record) if root else _e(record.run),
            f"<span class='{c.status}'>{c.status}</span>",
            _e(c.check),
            _e(c.reason),
        ]
        for record, checks in zip(records, results, strict=True)
        for c in checks
        if c.status in (ALERT, WARN)
    ]
    shown = flagged_rows[::-1][:MAX_FLAGGED_ROWS]
    more = len(flagged_rows) - len(shown)
    table = (
        _table(["dt", "run", "level", "check", "reason"], shown) if shown else "<p class='ok'>No run is flagged.</p>"
    )
    return "Flagged runs", table + (f"<p>{more:,} older flag(s) in runs.parquet.</p>" if more else "")


def plot_sections(plots: dict[str, pathlib.Path]) -> list[tuple[str, str]]:
    """One section per plot that was drawn, as a data URI."""
    return [
        (title, f"<img alt='{_e(title)}' src='{png_data_uri(plots[key])}'>")
        for key, title in PLOT_TITLES.items()
        if plots.get(key) is not None
    ]


def model_changes_section(records: Sequence[RunRecord]) -> tuple[str, str]:
    """The first run's model, then each run that changed it."""
    change_rows = [
        [
            _e(records[i].dt),
            _e(records[i].run),
            _e(_previous_readable(records, i).model_label),
            _e(records[i].model_label),
        ]
        for i in model_changes(records)
    ]
    first = (
        f"<p>First run {_e(records[0].run)} used {_e(records[0].model_label)} ({_e(records[0].runtime)}).</p>"
        if records
        else ""
    )
    table = _table(["dt", "run", "from", "to"], change_rows) if change_rows else "<p>No model change.</p>"
    return "Model changes", first + table


def _previous_readable(records: Sequence[RunRecord], i: int) -> RunRecord:
    return next(r for r in reversed(records[:i]) if not r.unreadable)


def references_section(refs: Sequence[Reference], thresholds: Thresholds, notes: Sequence[str]) -> tuple[str, str]:
    """What runs are compared with, the thresholds of the checks, and the monitor's notes."""
    seen, ref_rows = set(), []
    for ref in refs:
        if ref.name not in seen:
            seen.add(ref.name)
            ref_rows.append([_e(ref.kind), _e(ref.name), _pct(ref.error_rate), _pct(ref.low_confidence_rate)])
    threshold_rows = [
        ["PSI warn (class mix, confidence)", f"{thresholds.psi_warn:g}"],
        ["PSI alert (class mix, confidence)", f"{thresholds.psi_alert:g}"],
        ["error rate rise (alert)", f"{thresholds.error_rate_rise:.0%} points"],
        ["low-confidence rate rise (alert)", f"{thresholds.low_confidence_rise:.0%} points"],
        ["blank rate rise (alert)", f"{thresholds.blank_rise:.0%} points"],
        ["not-a-digit rate rise (alert)", f"{thresholds.not_digit_rise:.0%} points"],
        ["accuracy drop (alert)", f"{thresholds.accuracy_drop:.0%} points"],
        ["fewest scored images for the PSI checks", f"{thresholds.min_scored:,}"],
        [
            "volume (alert)",
            f"0 images, or under {thresholds.min_volume_ratio:.0%} of the median of the last "
            f"{thresholds.volume_window} runs",
        ],
    ]
    return (
        "References and thresholds",
        _table(["kind", "reference", "error rate", "low-confidence rate"], ref_rows)
        + _table(["threshold", "value"], threshold_rows)
        + f"<p>Checks: {', '.join(CHECKS)}.</p>"
        + "".join(f"<p>Note: {_e(n)}</p>" for n in notes),
    )


def run_row(record: RunRecord, checks: Sequence[CheckResult]) -> list[str]:
    """One run's row in the table of latest runs."""
    c = record.counts
    psi = {x.check: x.value for x in checks}
    status = status_of(checks)
    return [
        _e(record.dt),
        _e(record.run),
        _when(record),
        _e(record.model_label),
        _e(record.runtime),
        f"{c.get('matched', 0):,}",
        f"{c.get('scored', 0):,}",
        f"{c.get('errors', 0):,}",
        _pct(record.low_confidence_rate),
        "&ndash;" if psi.get("class_mix") is None else f"{psi['class_mix']:.3f}",
        "&ndash;" if psi.get("confidence") is None else f"{psi['confidence']:.3f}",
        _pct(record.summary.get("accuracy")),
        f"<span class='{status}'>{status}</span>",
    ]


RUN_COLUMNS = (
    "dt",
    "run",
    "committed (UTC)",
    "model",
    "runtime",
    "matched",
    "scored",
    "errors",
    "low conf.",
    "PSI class mix",
    "PSI confidence",
    "accuracy",
    "status",
)


def latest_runs_section(records: Sequence[RunRecord], results: Sequence[Sequence[CheckResult]]) -> tuple[str, str]:
    """The last :data:`LATEST_RUNS` runs, newest first."""
    last = list(zip(records, results, strict=True))[-LATEST_RUNS:][::-1]
    return (
        f"Latest runs ({len(last)} of {len(records):,}; every run in runs.parquet)",
        _table(RUN_COLUMNS, [run_row(record, checks) for record, checks in last]),
    )
