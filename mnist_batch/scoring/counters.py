"""The job's Beam counters: one namespace, and reading them back from a finished run."""

from __future__ import annotations

from apache_beam.metrics import Metrics

METRICS_NAMESPACE = "mnist_batch"
PROGRESS_LISTING = "ListForProgress"
"""The step that lists the files a second time for the progress line's total: its counters are not the run's."""


def counter(name: str):
    """A Beam counter in this package's namespace (``files_matched``, ``read_errors``, ...)."""
    return Metrics.counter(METRICS_NAMESPACE, name)


def metric_counters(result) -> dict[str, int]:
    """``{name: value}`` of the run's Beam counters (committed where the runner has them)."""
    counters: dict[str, int] = {}
    try:
        query = result.metrics().query()
    except Exception:  # noqa: BLE001 -- some runners have no metrics API; the summary then has none
        return counters
    for item in query.get("counters", []):
        if (item.key.step or "").startswith(PROGRESS_LISTING):
            continue
        value = item.committed if item.committed is not None else item.attempted
        name = item.key.metric.name
        if item.key.metric.namespace == METRICS_NAMESPACE or name.startswith(("num_", "failed_batches")):
            counters[name] = counters.get(name, 0) + int(value or 0)
    return dict(sorted(counters.items()))
