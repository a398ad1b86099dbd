"""``mnist-batch monitor``: one table and one page over every committed run of a runs root, with alerts."""

from __future__ import annotations

import argparse
import sys

from mnist_batch.cli.common import HelpFormatter, add_verbosity

EXIT_FLAGGED = 5

DESCRIPTION = """\
Watch a runs root (score --layout runs --output ROOT): read every committed run's row of the runs
table (ROOT/runs/: identity, commit time, counts) and its summary.json (class mix, confidence,
reference; never its prediction rows), order the runs by commit time, compare each run with a
reference and write into --output:

  runs.parquet   one row per run: counts, errors by stage, skipped by reason, rates, class mix,
                 confidence histogram, accuracy / macro-F1 (labelled runs), wall time, images/s,
                 PSI values, status and flags
  monitor.html   self-contained page: trend plots (volume, rates, drift, class mix, confidence),
                 model changes marked on the time axis, the flagged runs with their reasons
  monitor.json   the latest run's checks, the thresholds
  plots/*.png    the page's plots

Reference of a run: the held-out distribution in its model's card (found beside the model path
the summary records, or given with --model-card), else the model's first committed run; or
--reference RUN_ID for every run.

Reference of a run scored since the summaries carry it: the model card's held-out distribution
copied into summary.json at scoring (model and input paths are stored absolute), so the verdict
is the same from any folder. When the monitor must fall back to the model's first run because the
card is found nowhere, it prints a FALLBACK line and the run's `reference` check alerts.

Checks: class_mix and confidence (PSI; warn/alert thresholds), errors, low_confidence, blank, not_digit
(rise of the rate over the reference, in points), accuracy (drop, labelled runs), volume (0 images
scored, or under --min-volume-ratio (10 %) of the median scored by the last --volume-window (7)
runs), reference (fell back: no model card found), summary (summary.json unreadable or incomplete:
the run's status is `unreadable`, it is never a reference or a model-change baseline; the other
runs are judged normally), model (differs from the previous readable run).
Groups for --fail-on: drift = class_mix,confidence; all = every check.

Runs table vs summaries: a committed run without a readable row in ROOT/runs/ (scored before the
table existed) is judged from its summary; such a run, a row that disagrees with its summary, and
a row whose run has no _SUCCESS (a commit in progress or cut short) each print a RUNS TABLE line
(more than five runs without a row: one line for all) and are listed on the page and in
monitor.json's notes.

Examples:
  mnist-batch monitor out/runs --output out/monitor
  mnist-batch monitor gs://bucket/scored --output /srv/www/monitor --fail-on drift,errors,low_confidence

Nightly, right after scoring:
  mnist-batch score --model out/demo/models/cnn.keras --input out/demo/test_images --output out/runs --layout runs --incremental
  mnist-batch monitor out/runs --output out/monitor --fail-on drift,errors,low_confidence

Exit codes: 0 ok (or the latest run is flagged only on checks not in --fail-on); 2 bad argument
or not a runs root; 5 the latest run is flagged on a --fail-on check (one line per failed check),
including `reference` (a fallback), `summary` (unreadable) and `volume` when they are named or with
`all`.
"""


THRESHOLD_OPTIONS = (
    ("psi_warn", float, "PSI at which class mix / confidence warn"),
    ("psi_alert", float, "PSI at which class mix / confidence alert"),
    ("error_rate_rise", float, "alert when the error rate rises more"),
    ("low_confidence_rise", float, "alert when the low-confidence rate rises more"),
    ("blank_rise", float, "alert when the blank rate rises more"),
    ("not_digit_rise", float, "alert when the not-a-digit rate rises more"),
    ("accuracy_drop", float, "alert when accuracy falls more"),
    ("min_volume_ratio", float, "volume alerts when a run scored fewer than this share of the recent runs' median"),
    ("volume_window", int, "how many previous runs make that median"),
    ("min_scored", int, "runs that scored fewer images skip the PSI checks"),
)
"""The ``Thresholds`` fields as options (``--psi-warn`` ...), defaults from ``Thresholds()``."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mnist_batch.monitoring.checks import Thresholds

    d = Thresholds()
    p = sub.add_parser(
        "monitor",
        help="trend table and page over the committed runs of a runs root; drift and quality alerts",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("root", help="the runs root (--output of score --layout runs); local or gs:// ...")
    p.add_argument("--output", required=True, help="folder for runs.parquet, monitor.html, monitor.json, plots/")
    p.add_argument("--reference", metavar="RUN_ID", default=None, help="compare every run with this committed run")
    p.add_argument(
        "--model-card",
        metavar="PATH",
        action="append",
        default=[],
        help="a model card (NAME.card.json) to use when none is found beside the recorded model path (repeatable)",
    )
    p.add_argument(
        "--fail-on",
        metavar="CHECKS",
        default="",
        help="comma-separated checks (or drift, all): exit 5 when the latest run is flagged on one of them",
    )
    p.add_argument(
        "--metrics-file",
        metavar="PATH.prom",
        default=None,
        help="also write the latest run's figures (counts, rates, drift, status) in Prometheus' text format, "
        "atomically, for node_exporter's textfile collector (docs/evaluation.md, 'Metrics for Prometheus')",
    )
    for name, kind, text in THRESHOLD_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(d, name), help=text)
    add_verbosity(p)
    p.set_defaults(run=run)


def check_metrics_file(path: str | None) -> None:
    """Refuses a ``--metrics-file`` the collector would never read, or whose folder is missing, before any work."""
    import os

    from mnist_batch.errors import MnistBatchError
    from mnist_batch.monitoring.metrics import SUFFIX

    if path is None:
        return
    if not path.endswith(SUFFIX):
        raise MnistBatchError(
            f"--metrics-file {path}: must end in {SUFFIX} (node_exporter's textfile collector reads only those)"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise MnistBatchError(f"--metrics-file {path}: {folder} is not a writable folder")


def run(args: argparse.Namespace) -> int:
    from mnist_batch.monitoring.checks import Thresholds, parse_fail_on, status_of
    from mnist_batch.monitoring.monitor import monitor
    from mnist_batch.runstore import fs

    fs.configure()  # Beam's filesystems and the S3 client from the environment (AWS_* variables)
    fs.check_reachable(args.root, f"monitor: {args.root}")  # a bucket's refusal in one line, not a traceback
    fail_on = parse_fail_on(args.fail_on)
    thresholds = Thresholds(**{name: getattr(args, name) for name, _, _ in THRESHOLD_OPTIONS})
    check_metrics_file(args.metrics_file)
    result = monitor(
        args.root, args.output, thresholds=thresholds, reference_run=args.reference, model_cards=args.model_card
    )
    print(f"monitor: {len(result.records):,} committed run(s) in {result.timings['total_s']:.2f} s")
    for name in ("runs", "page", "json"):
        if name in result.outputs:
            print(f"  {result.outputs[name]}")
    if args.metrics_file:
        from mnist_batch.monitoring.metrics import prometheus_text, write_metrics_file

        write_metrics_file(args.metrics_file, prometheus_text(args.root, result, fail_on))
        print(f"  {args.metrics_file}")
    for fallback in dict.fromkeys(r.fallback for r in result.references if r.fallback):
        print(f"monitor: FALLBACK: {fallback}")
    for note in result.table_notes:
        print(f"monitor: RUNS TABLE: {note.removeprefix('runs table: ')}")
    unreadable = [r for r in result.records if r.unreadable]
    for r in unreadable:
        print(f"monitor: UNREADABLE run {r.run} (dt={r.dt}): {r.unreadable}")
    if result.latest is None:
        print("monitor: no committed run yet")
        return 0
    record, checks = result.latest
    flagged = [c for c in checks if c.status != "ok"]
    print(f"latest run {record.run} (dt={record.dt}): {status_of(checks)}")
    for c in flagged:
        print(f"  {c.status}: {c.check}: {c.reason}")
    failed = result.failed_checks(fail_on)
    for c in failed:
        print(f"mnist-batch monitor: FAILED {c.check}: run {record.run} (dt={record.dt}): {c.reason}", file=sys.stderr)
    return EXIT_FLAGGED if failed else 0
