"""Drift and quality checks of one run against its reference; each says ok, warn or alert, and why.

Checks (the names ``--fail-on`` takes; ``drift`` = ``class_mix,confidence``; ``all`` = every one):

* ``class_mix``: population stability index (PSI) of the predicted class counts;
* ``confidence``: PSI of the binned top-class confidence;
* ``errors``: rise of the error rate (errors / matched files) over the reference's;
* ``low_confidence``: rise of the low-confidence rate (below the run's review threshold / scored);
* ``blank``: rise of the blank-image rate;
* ``not_digit``: rise of the not-a-digit rate (rows flagged ``not_digit`` / scored; models
  with the check, against the card's held-out rate or the reference run's);
* ``accuracy``: fall of the accuracy (labelled runs, when the reference has one);
* ``volume``: the run scored no image, or fewer than ``min_volume_ratio`` (10 %) of the median
  images scored by the previous ``volume_window`` (7) readable runs that scored any (a dead or
  cut feed looks healthy on every rate);
* ``reference``: the monitor had to fall back to the model's first run because the model card
  could not be found (neither copied into the summary at scoring nor beside the model path);
* ``summary``: the run's ``summary.json`` is unreadable or incomplete (status ``unreadable``: the
  run is not judged, never a reference, never the baseline of ``model``);
* ``model``: the model differs from the previous (readable) run's.

A run is *flagged* when a check reaches ``alert``; ``warn`` (PSI between the two thresholds) is
shown on the page but flags nothing.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mnist_batch.errors import MnistBatchError
from mnist_batch.metrics import population_stability_index

if TYPE_CHECKING:  # the command line reads the defaults here without loading Beam
    from mnist_batch.monitoring.collect import RunRecord
    from mnist_batch.monitoring.reference import Reference

CHECKS = (
    "class_mix",
    "confidence",
    "errors",
    "low_confidence",
    "blank",
    "not_digit",
    "accuracy",
    "volume",
    "reference",
    "summary",
    "model",
)
GROUPS = {"drift": ("class_mix", "confidence"), "all": CHECKS}
OK, WARN, ALERT = "ok", "warn", "alert"
UNREADABLE = "unreadable"
"""Status of a run whose summary cannot be read or trusted (the ``summary`` check alerts)."""


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where the checks warn and alert (PSI) or alert (rises and falls, in absolute rate points)."""

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    error_rate_rise: float = 0.05
    low_confidence_rise: float = 0.10
    blank_rise: float = 0.05
    not_digit_rise: float = 0.05
    accuracy_drop: float = 0.05
    min_volume_ratio: float = 0.1
    """``volume`` alerts when a run scored fewer than this share of the median of the recent runs."""
    volume_window: int = 7
    """How many previous readable runs that scored images make that median."""
    min_scored: int = 100
    """Runs that scored fewer images skip the PSI checks: with n images over k bins, PSI of a run
    drawn from the reference itself is about (k - 1) / n (0.19 at n = 100, 20 bins), so tiny
    nights (an incremental run that found three new files) would look like drift."""

    def check(self) -> Thresholds:
        if not 0 <= self.psi_warn <= self.psi_alert:
            raise MnistBatchError(f"monitor: need 0 <= --psi-warn ({self.psi_warn}) <= --psi-alert ({self.psi_alert})")
        for name in ("error_rate_rise", "low_confidence_rise", "blank_rise", "not_digit_rise", "accuracy_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise MnistBatchError(f"monitor: --{name.replace('_', '-')} must be in [0, 1]")
        if not 0 <= self.min_volume_ratio <= 1:
            raise MnistBatchError("monitor: --min-volume-ratio must be in [0, 1]")
        if self.volume_window < 1:
            raise MnistBatchError("monitor: --volume-window must be at least 1")
        if self.min_scored < 1:
            raise MnistBatchError("monitor: --min-scored must be at least 1")
        return self


@dataclasses.dataclass(frozen=True)
class CheckResult:
    check: str
    status: str
    value: float | None
    reason: str


def parse_fail_on(text: str | None) -> tuple[str, ...]:
    """``"drift,errors"`` -> ``("class_mix", "confidence", "errors")``."""
    if not text:
        return ()
    out: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        names = GROUPS.get(word, (word,))
        for name in names:
            if name not in CHECKS:
                choices = ", ".join((*GROUPS, *CHECKS))
                raise MnistBatchError(f"monitor: --fail-on: unknown check {word!r} (choose from {choices})")
            if name not in out:
                out.append(name)
    return tuple(out)


def _psi(name: str, what: str, expected, actual, ref: Reference, t: Thresholds) -> CheckResult:
    if len(expected) != len(actual):
        return CheckResult(
            name, OK, None, f"{what}: not comparable with {ref.label} ({len(actual)} vs {len(expected)} bins)"
        )
    if actual.sum() == 0 or expected.sum() == 0:
        return CheckResult(name, OK, None, f"{what}: nothing scored")
    if actual.sum() < t.min_scored:
        return CheckResult(name, OK, None, f"{what}: {int(actual.sum())} images, fewer than {t.min_scored} for PSI")
    psi = population_stability_index(expected, actual)
    status = ALERT if psi >= t.psi_alert else WARN if psi >= t.psi_warn else OK
    limit = {ALERT: f">= alert {t.psi_alert:g}", WARN: f">= warn {t.psi_warn:g}", OK: f"< warn {t.psi_warn:g}"}[status]
    return CheckResult(name, status, psi, f"{what} PSI {psi:.3f} {limit} vs {ref.label}")


def _rise(name: str, what: str, value: float | None, base: float | None, limit: float, ref: Reference) -> CheckResult:
    if value is None or base is None:
        return CheckResult(
            name, OK, value, f"{what}: no baseline" if value is not None else f"{what}: nothing to count"
        )
    status = ALERT if value - base > limit else OK
    sign = ">" if status == ALERT else "<="
    return CheckResult(
        name, status, value, f"{what} {value:.1%} vs {base:.1%} in {ref.label} (rise {sign} {limit:.0%} points)"
    )


def volume_check(record: RunRecord, recent: Sequence[int], t: Thresholds) -> CheckResult:
    """``volume``: 0 images scored, or fewer than ``t.min_volume_ratio`` of the median of ``recent`` (scored counts)."""
    scored = record.counts.get("scored", 0)
    if scored == 0:
        matched = record.counts.get("matched", 0)
        return CheckResult("volume", ALERT, 0.0, f"no image scored ({matched:,} matched): a dead or empty feed?")
    if not recent:
        return CheckResult("volume", OK, float(scored), f"{scored:,} images scored (no earlier run to compare)")
    median = float(statistics.median(recent))
    status = ALERT if scored < t.min_volume_ratio * median else OK
    sign = "<" if status == ALERT else ">="
    return CheckResult(
        "volume",
        status,
        float(scored),
        f"{scored:,} images scored {sign} {t.min_volume_ratio:.0%} of the median {median:,.0f} of the last "
        f"{len(recent)} run(s)",
    )


def unreadable_results(record: RunRecord) -> list[CheckResult]:
    """A run whose summary cannot be trusted: the ``summary`` check alerts; nothing else is judged."""
    why = "not judged: unreadable summary"
    return [
        CheckResult(c, ALERT, None, record.unreadable or "") if c == "summary" else CheckResult(c, OK, None, why)
        for c in CHECKS
    ]


def check_run(
    record: RunRecord,
    ref: Reference,
    previous: RunRecord | None,
    t: Thresholds,
    recent: Sequence[int] = (),
) -> list[CheckResult]:
    """Every check of ``record`` against ``ref`` (``previous``: the readable run before it, for ``model``;
    ``recent``: images scored by the readable runs before it, newest last, for ``volume``)."""
    if record.unreadable:
        return unreadable_results(record)
    is_reference = ref.kind == "run" and ref.run == record.run
    results = []
    if is_reference:
        results.append(CheckResult("class_mix", OK, 0.0, "this run is the reference"))
        results.append(CheckResult("confidence", OK, 0.0, "this run is the reference"))
    elif "predicted_class_counts" not in record.summary or "confidence_histogram" not in record.summary:
        why = "summary without class counts and confidence histogram (scored before they were recorded)"
        results.append(CheckResult("class_mix", OK, None, why))
        results.append(CheckResult("confidence", OK, None, why))
    else:
        results.append(
            _psi("class_mix", "predicted class mix", ref.predicted_class_counts, record.predicted_class_counts, ref, t)
        )
        results.append(
            _psi("confidence", "confidence distribution", ref.confidence_histogram, record.confidence_histogram, ref, t)
        )
    results.append(_rise("errors", "error rate", record.error_rate, ref.error_rate, t.error_rate_rise, ref))
    results.append(
        _rise(
            "low_confidence",
            "low-confidence rate",
            record.low_confidence_rate,
            ref.low_confidence_rate,
            t.low_confidence_rise,
            ref,
        )
    )
    results.append(_rise("blank", "blank rate", record.blank_rate, ref.blank_rate, t.blank_rise, ref))
    results.append(
        _rise("not_digit", "not-digit rate", record.not_digit_rate, ref.not_digit_rate, t.not_digit_rise, ref)
    )
    acc = record.summary.get("accuracy")
    if acc is None or ref.accuracy is None:
        results.append(
            CheckResult("accuracy", OK, acc, "accuracy: no labels" if acc is None else "accuracy: no baseline")
        )
    else:
        drop = float(ref.accuracy) - float(acc)
        status = ALERT if drop > t.accuracy_drop else OK
        results.append(
            CheckResult(
                "accuracy",
                status,
                float(acc),
                f"accuracy {acc:.1%} vs {ref.accuracy:.1%} in {ref.label} (drop {'>' if status == ALERT else '<='} "
                f"{t.accuracy_drop:.0%} points)",
            )
        )
    results.append(volume_check(record, [n for n in recent if n > 0][-t.volume_window :], t))
    if ref.fallback:
        results.append(CheckResult("reference", ALERT, None, ref.fallback))
    else:
        results.append(CheckResult("reference", OK, None, f"compared with {ref.label}"))
    results.append(CheckResult("summary", OK, None, "summary read"))
    if previous is not None and previous.model_id != record.model_id:
        results.append(
            CheckResult("model", ALERT, None, f"model changed: {previous.model_label} -> {record.model_label}")
        )
    else:
        results.append(CheckResult("model", OK, None, "same model as the previous run"))
    return results


def check_runs(records: Sequence[RunRecord], refs: Sequence[Reference], t: Thresholds) -> list[list[CheckResult]]:
    """The checks of every run; an unreadable run is skipped as the ``previous`` and ``recent`` of later runs."""
    out: list[list[CheckResult]] = []
    previous: RunRecord | None = None
    recent: list[int] = []
    for record, ref in zip(records, refs, strict=True):
        out.append(check_run(record, ref, previous, t, recent))
        if not record.unreadable:
            previous = record
            recent.append(record.counts.get("scored", 0))
    return out


def status_of(results: Sequence[CheckResult]) -> str:
    """``unreadable`` (the summary check alerts), else ``alert``, ``warn`` or ``ok``."""
    if any(r.check == "summary" and r.status == ALERT for r in results):
        return UNREADABLE
    levels = {r.status for r in results}
    return ALERT if ALERT in levels else WARN if WARN in levels else OK
