"""``monitor(root, output)``: read every committed run's summary, check it, write the table and the page."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence

from mnist_batch.monitoring import page
from mnist_batch.monitoring.checks import ALERT, CheckResult, Thresholds, check_runs, status_of
from mnist_batch.monitoring.collect import RunRecord, collect_runs, runs_table_notes
from mnist_batch.monitoring.plots import write_plots
from mnist_batch.monitoring.reference import Reference, assign_references, load_cards
from mnist_batch.monitoring.table import MONITOR_JSON_FILE, MONITOR_PAGE_FILE, MONITOR_RUNS_FILE, runs_table


@dataclasses.dataclass
class MonitorResult:
    records: list[RunRecord]
    references: list[Reference]
    results: list[list[CheckResult]]
    notes: list[str]
    outputs: dict[str, pathlib.Path]
    timings: dict[str, float]
    table_notes: list[str] = dataclasses.field(default_factory=list)
    """Where the runs table and the committed summaries disagree (also in ``notes``; printed by the CLI)."""

    @property
    def latest(self) -> tuple[RunRecord, list[CheckResult]] | None:
        return (self.records[-1], self.results[-1]) if self.records else None

    def failed_checks(self, fail_on: Sequence[str]) -> list[CheckResult]:
        """The latest run's checks among ``fail_on`` that reached alert."""
        if not self.records:
            return []
        return [c for c in self.results[-1] if c.check in fail_on and c.status == ALERT]


def monitor(
    root: str,
    output: str | pathlib.Path,
    *,
    thresholds: Thresholds | None = None,
    reference_run: str | None = None,
    model_cards: Sequence[str] = (),
    page_file: bool = True,
) -> MonitorResult:
    """Checks every committed run under ``root``; writes ``runs.parquet``, ``monitor.json`` and ``monitor.html``."""
    import pyarrow.parquet as pq

    thresholds = (thresholds or Thresholds()).check()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    records = collect_runs(root)
    table_notes = runs_table_notes(root, records)
    timings["read_summaries_s"] = time.perf_counter() - start
    cards, notes = load_cards(records, model_cards)
    notes = [*table_notes, *notes]
    refs = assign_references(records, cards, reference_run)

    results = check_runs(records, refs, thresholds)
    timings["check_s"] = time.perf_counter() - start - timings["read_summaries_s"]
    out = pathlib.Path(output)
    out.mkdir(parents=True, exist_ok=True)
    outputs = {"runs": out / MONITOR_RUNS_FILE, "json": out / MONITOR_JSON_FILE}
    mark = time.perf_counter()
    pq.write_table(runs_table(records, refs, results), outputs["runs"])
    latest = None
    if records:
        latest = {
            "dt": records[-1].dt,
            "run": records[-1].run,
            "model_id": records[-1].model_id,
            "committed_at": records[-1].committed_at.isoformat() if records[-1].committed_at else None,
            "reference": refs[-1].label,
            "status": status_of(results[-1]),
            "checks": [dataclasses.asdict(c) for c in results[-1]],
        }
    outputs["json"].write_text(
        json.dumps(
            {
                "root": root,
                "runs": len(records),
                "thresholds": dataclasses.asdict(thresholds),
                "latest": latest,
                "notes": notes,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    timings["table_s"] = time.perf_counter() - mark
    if page_file:
        mark = time.perf_counter()
        plots = write_plots(records, results, thresholds, out / "plots")
        html = page.render_page(root, records, refs, results, thresholds, plots, notes, table_notes)
        outputs["page"] = out / MONITOR_PAGE_FILE
        outputs["page"].write_text(html, encoding="utf-8")
        timings["page_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    return MonitorResult(records, refs, results, notes, outputs, timings, table_notes)
