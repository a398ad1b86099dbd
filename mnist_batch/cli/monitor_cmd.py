"""``mnist-batch monitor``: one table and one page over every committed run of a runs root, with alerts."""

from __future__ import annotations

import argparse
import sys

from mnist_batch.cli.common import HelpFormatter, add_verbosity

EXIT_FLAGGED = 5

DESCRIPTION = """\
Watch a runs root (score --layout runs --output ROOT): read every committed run's summary.json
(never its prediction rows), compare each run with a reference and write into --output:

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

Checks: class_mix and confidence (PSI; warn/alert thresholds), errors, low_confidence, blank
(rise of the rate over the reference, in points), accuracy (drop, labelled runs), model (differs
from the previous run). Groups for --fail-on: drift = class_mix,confidence; all = every check.

Examples:
  mnist-batch monitor out/runs --output out/monitor
  mnist-batch monitor gs://bucket/scored --output /srv/www/monitor --fail-on drift,errors,low_confidence

Nightly, right after scoring:
  mnist-batch score --model models/cnn.keras --input scans/ --output out/runs --layout runs --incremental
  mnist-batch monitor out/runs --output out/monitor --fail-on drift,errors,low_confidence

Exit codes: 0 ok (or the latest run is flagged only on checks not in --fail-on); 2 bad argument
or not a runs root; 5 the latest run is flagged on a --fail-on check (one line per failed check).
"""


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
    p.add_argument("--psi-warn", type=float, default=d.psi_warn, help="PSI at which class mix / confidence warn")
    p.add_argument("--psi-alert", type=float, default=d.psi_alert, help="PSI at which class mix / confidence alert")
    p.add_argument(
        "--error-rate-rise", type=float, default=d.error_rate_rise, help="alert when the error rate rises more"
    )
    p.add_argument(
        "--low-confidence-rise",
        type=float,
        default=d.low_confidence_rise,
        help="alert when the low-confidence rate rises more",
    )
    p.add_argument("--blank-rise", type=float, default=d.blank_rise, help="alert when the blank rate rises more")
    p.add_argument("--accuracy-drop", type=float, default=d.accuracy_drop, help="alert when accuracy falls more")
    p.add_argument(
        "--min-scored", type=int, default=d.min_scored, help="runs that scored fewer images skip the PSI checks"
    )
    add_verbosity(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnist_batch.monitoring.checks import Thresholds, parse_fail_on, status_of
    from mnist_batch.monitoring.monitor import monitor

    fail_on = parse_fail_on(args.fail_on)
    thresholds = Thresholds(
        psi_warn=args.psi_warn,
        psi_alert=args.psi_alert,
        error_rate_rise=args.error_rate_rise,
        low_confidence_rise=args.low_confidence_rise,
        blank_rise=args.blank_rise,
        accuracy_drop=args.accuracy_drop,
        min_scored=args.min_scored,
    )
    result = monitor(
        args.root, args.output, thresholds=thresholds, reference_run=args.reference, model_cards=args.model_card
    )
    print(f"monitor: {len(result.records):,} committed run(s) in {result.timings['total_s']:.2f} s")
    for name in ("runs", "page", "json"):
        if name in result.outputs:
            print(f"  {result.outputs[name]}")
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
