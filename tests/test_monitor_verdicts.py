"""The monitor's verdicts on small synthetic run stores (summaries only, no Beam): damaged summaries,
where the reference comes from, the volume check. The real-store cases are in test_monitor.py."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser import headless

from mnist_batch.cli import main as cli_main
from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.monitoring.checks import CHECKS, Thresholds, parse_fail_on
from mnist_batch.monitoring.monitor import monitor
from mnist_batch.tables import (
    LAYOUT_FILE,
    LAYOUT_FORMAT,
    LAYOUT_VERSION,
    RUNS_DIR,
    RUNS_SCHEMA,
    RUNS_TABLE,
    SUCCESS_FILE,
    SUMMARY_FILE,
    runs_row,
)

MODEL_ID = "a" * 64
OTHER_ID = "b" * 64
RNG = np.random.default_rng(0)
MIX = np.full(10, 100)
HIST = np.r_[np.zeros(CONFIDENCE_BINS - 2, np.int64), [50, 950]]


def reference_block(model_id: str = MODEL_ID) -> dict:
    return {
        "split": "test",
        "examples": 1000,
        "predicted_class_counts": MIX.tolist(),
        "confidence_histogram": HIST.tolist(),
        "model_name": "cnn",
        "model_id": model_id,
        "accuracy": 0.99,
    }


def summary(run: str, n: int = 1000, *, model_id: str = MODEL_ID, committed_at: str, mix=None, stored=True) -> dict:
    mix = MIX * n // 1000 if mix is None else np.asarray(mix)
    hist = HIST * n // 1000
    return {
        "model": "model/cnn.keras",  # relative, as older summaries kept it
        "model_id": model_id,
        "model_name": "cnn",
        "class_names": [str(i) for i in range(10)],
        "runtime": "keras",
        "run_id": run,
        "counts": {
            "matched": n,
            "scored": n,
            "errors": 0,
            "skipped": 0,
            "low_confidence": 0,
            "blank": 0,
            "labelled": 0,
        },
        "predicted_class_counts": mix.tolist(),
        "confidence_histogram": hist.tolist(),
        "review_threshold": 0.9,
        "committed_at": committed_at,
        **({"model_reference": reference_block(model_id)} if stored else {}),
    }


def write_runs_row(root: pathlib.Path, dt: str, run: str, data: dict) -> None:
    """The run's row of the runs table (``ROOT/runs/dt=/run=/``), as the commit writes it."""
    folder = root / RUNS_TABLE / f"dt={dt}" / f"run={run}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([runs_row(data)], schema=RUNS_SCHEMA), folder / "part-0.parquet")


def make_root(tmp_path: pathlib.Path, runs: list[tuple[str, str, object]]) -> pathlib.Path:
    """A runs root whose committed runs have these summaries (a dict, or raw text for a damaged one) and,
    for each dict, its row of the runs table."""
    root = tmp_path / "root"
    root.mkdir(parents=True)
    info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
    (root / LAYOUT_FILE).write_text(json.dumps(info))
    for dt, run, data in runs:
        meta = root / RUNS_DIR / f"dt={dt}" / f"run={run}"
        meta.mkdir(parents=True)
        (meta / SUMMARY_FILE).write_text(data if isinstance(data, str) else json.dumps(data))
        (meta / SUCCESS_FILE).write_text("")
        if isinstance(data, dict) and data.get("run_id"):
            write_runs_row(root, dt, run, data)
    return root


def by_run(result) -> dict:
    return {r.run: {c.check: c for c in checks} for r, checks in zip(result.records, result.results, strict=True)}


def good(run: str, day: int, **kw) -> tuple[str, str, dict]:
    return f"2026-03-{day:02d}", run, summary(run, committed_at=f"2026-03-{day:02d}T02:00:00+00:00", **kw)


@pytest.mark.slow
def test_damaged_summaries_are_unreadable_rows_and_never_a_baseline(tmp_path, capsys):
    full = json.dumps(summary("r3", committed_at="2026-03-03T02:00:00+00:00"))
    root = make_root(
        tmp_path,
        [
            good("r1", 1),
            ("2026-03-02", "empty", "{}"),
            ("2026-03-02", "cut", full[: len(full) // 2]),
            ("2026-03-02", "list", "[1, 2]"),
            good("r3", 3, model_id=OTHER_ID),
            good("r4", 4, model_id=OTHER_ID),
        ],
    )
    result = monitor(str(root), tmp_path / "mon")
    checks = by_run(result)
    status = {
        r.run: s
        for r, s in zip(result.records, pq.read_table(result.outputs["runs"])["status"].to_pylist(), strict=True)
    }
    assert status == {
        "r1": "ok",
        "cut": "unreadable",
        "empty": "unreadable",
        "list": "unreadable",
        "r3": "alert",
        "r4": "ok",
    }
    assert "incomplete summary: no model_id, counts, committed_at" in checks["empty"]["summary"].reason
    assert (
        "JSONDecodeError" in checks["cut"]["summary"].reason and "not a JSON object" in checks["list"]["summary"].reason
    )
    # The run after the damaged ones is compared with the last readable run (r1), not with an empty one.
    assert checks["r3"]["model"].status == "alert" and "cnn aaaaaaaa -> cnn bbbbbbbb" in checks["r3"]["model"].reason
    assert all(ref.run not in ("empty", "cut", "list") for ref in result.references)
    # Readable runs are judged as if the damaged ones were not there.
    assert checks["r4"]["class_mix"].status == "ok" and checks["r4"]["volume"].status == "ok"
    rows = {r["run"]: r for r in pq.read_table(result.outputs["runs"]).to_pylist()}
    assert rows["empty"]["flags"][0].startswith("summary: ") and rows["empty"]["model_id"] is None
    html = result.outputs["page"].read_text()
    assert "unreadable" in html and "incomplete summary" in html
    # Not fatal: the command runs, says so, and fails only when asked to.
    out = tmp_path / "cli"
    assert cli_main(["monitor", str(root), "--output", str(out), "--fail-on", "all"]) == 0
    text = capsys.readouterr().out
    assert text.count("monitor: UNREADABLE run ") == 3 and "latest run r4" in text
    damaged_last = make_root(tmp_path / "b", [good("r1", 1), ("2026-03-02", "empty", "{}")])
    assert cli_main(["monitor", str(damaged_last), "--output", str(out), "--fail-on", "summary"]) == 5
    assert "FAILED summary: run empty" in capsys.readouterr().err
    assert cli_main(["monitor", str(damaged_last), "--output", str(out), "--fail-on", "drift"]) == 0
    with pytest.raises(Exception, match="incomplete summary"):
        monitor(str(damaged_last), tmp_path / "m2", reference_run="empty")


@pytest.mark.slow
def test_reference_travels_with_the_summary_and_fallback_is_loud(tmp_path, capsys, monkeypatch):
    """The card is nowhere (relative model path): the stored reference judges the run the same from any folder."""
    drifted = [300, 300, 50, 50, 50, 50, 50, 50, 50, 50]
    root = make_root(tmp_path, [good("r1", 1, mix=drifted), good("r2", 2)])
    for cwd in (tmp_path, root):
        monkeypatch.chdir(cwd)
        result = monitor(str(root), tmp_path / "mon")
        checks = by_run(result)
        assert result.references[0].kind == "card" and result.references[0].fallback is None
        assert checks["r1"]["class_mix"].status == "alert" and checks["r2"]["class_mix"].status == "ok"
        assert (
            checks["r2"]["reference"].status == "ok"
            and "model card of cnn aaaaaaaa" in checks["r2"]["reference"].reason
        )
    # Summaries without the stored copy (scored before it existed) and no card to be found: the first
    # run becomes the reference, and the monitor says it fell back.
    old = make_root(tmp_path / "old", [good("r1", 1, mix=drifted, stored=False), good("r2", 2, stored=False)])
    result = monitor(str(old), tmp_path / "mon_old")
    checks = by_run(result)
    assert result.references[1].kind == "run" and result.references[1].run == "r1"
    assert checks["r2"]["reference"].status == "alert" and "no model card found" in checks["r2"]["reference"].reason
    code = cli_main(["monitor", str(old), "--output", str(tmp_path / "c"), "--fail-on", "reference"])
    captured = capsys.readouterr()
    assert code == 5 and "monitor: FALLBACK: no model card found for cnn aaaaaaaa" in captured.out
    assert "FAILED reference: run r2" in captured.err
    assert cli_main(["monitor", str(old), "--output", str(tmp_path / "c"), "--fail-on", "errors"]) == 0
    assert "FALLBACK" in capsys.readouterr().out  # said on stdout even when not failing


@pytest.mark.slow
def test_volume_flags_an_empty_night_and_a_collapse(tmp_path, capsys):
    runs = [good(f"r{d}", d, n=1000) for d in range(1, 8)]
    root = make_root(tmp_path, [*runs, good("few", 8, n=90), good("normal", 9, n=700), good("zero", 10, n=0)])
    result = monitor(str(root), tmp_path / "mon")
    checks = by_run(result)
    assert (
        checks["few"]["volume"].status == "alert"
        and "90 images scored < 10% of the median 1,000" in checks["few"]["volume"].reason
    )
    assert checks["normal"]["volume"].status == "ok" and checks["r1"]["volume"].status == "ok"
    assert checks["zero"]["volume"].status == "alert" and "no image scored" in checks["zero"]["volume"].reason
    assert cli_main(["monitor", str(root), "--output", str(tmp_path / "c"), "--fail-on", "volume"]) == 5
    assert "FAILED volume: run zero" in capsys.readouterr().err
    assert (
        cli_main(
            ["monitor", str(root), "--output", str(tmp_path / "c"), "--fail-on", "volume", "--min-volume-ratio", "0"]
        )
        == 5
    )  # 0 images still alerts
    t = Thresholds(min_volume_ratio=0.05, volume_window=3)
    few = by_run(monitor(str(root), tmp_path / "m2", thresholds=t))["few"]["volume"]
    assert few.status == "ok" and "median 1,000 of the last 3 run(s)" in few.reason


@pytest.mark.slow
def test_the_monitor_reads_the_runs_table_and_reports_where_it_disagrees(tmp_path, capsys):
    """Order, identity and counts come from ROOT/runs/; a run in only one of runs table and markers,
    or a row that disagrees with its summary, is reported (stdout, page, monitor.json), never dropped."""
    backfill = summary("backfill", committed_at="2026-03-09T02:00:00+00:00")
    root = make_root(
        tmp_path,
        [
            good("r1", 1),
            good("r2", 2),
            ("2026-02-01", "backfill", backfill),  # an old dt scored last: the latest run by commit time
            good("no-row", 3),
            good("differs", 4),
            ("2026-03-05", "damaged", "{}"),
        ],
    )
    shutil.rmtree(root / RUNS_TABLE / "dt=2026-03-03")  # committed before the runs table existed
    write_runs_row(root, "2026-03-04", "differs", {**summary("differs", 400, committed_at="2026-03-04T02:00:00+00:00")})
    write_runs_row(root, "2026-03-05", "damaged", summary("damaged", 777, committed_at="2026-03-05T02:00:00+00:00"))
    write_runs_row(root, "2026-03-06", "half", summary("half", committed_at="2026-03-06T02:00:00+00:00"))  # no marker
    (root / RUNS_TABLE / "dt=2026-03-02" / "run=r2" / "part-0.parquet").write_bytes(b"PAR1 cut short")  # damaged
    result = monitor(str(root), tmp_path / "mon")
    assert [r.run for r in result.records] == ["r1", "r2", "no-row", "differs", "damaged", "backfill"]
    assert result.latest[0].run == "backfill" and "half" not in {r.run for r in result.records}
    by = {r.run: r for r in result.records}
    assert by["differs"].counts["scored"] == 400 and by["damaged"].counts["scored"] == 777  # the row's counts
    assert by["damaged"].unreadable and by["damaged"].model_id == MODEL_ID  # identity from the row
    assert by["no-row"].row is None and by["no-row"].counts["scored"] == 1000  # judged from its summary
    assert by["r2"].row is None and by["r2"].counts["scored"] == 1000 and not by["r2"].unreadable
    notes = "\n".join(result.table_notes)
    assert len(result.table_notes) == 4, notes
    assert "run r2 (dt=2026-03-02): its row in " in notes and "cannot be read" in notes
    assert "run no-row (dt=2026-03-03): no row in " in notes and "committed before the runs table" in notes
    assert "run differs (dt=2026-03-04): its row in the runs table disagrees" in notes and "scored 400 vs 1000" in notes
    assert "run half (dt=2026-03-06) has a row in " in notes and "not committed (no _SUCCESS" in notes
    assert set(result.table_notes) <= set(json.loads(result.outputs["json"].read_text())["notes"])
    html = result.outputs["page"].read_text()
    assert "run half (dt=2026-03-06)" in html and "run no-row (dt=2026-03-03)" in html
    top = html[: html.index("<h2>")]  # said at the top of the page, under the banner, not only in the notes
    assert (
        "The runs table and the committed runs do not agree:" in top
        and top.count("<li>") == 4
        and "run half (dt=2026-03-06)" in top
    )
    assert cli_main(["monitor", str(root), "--output", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert out.count("monitor: RUNS TABLE: run ") == 4 and "latest run backfill (dt=2026-02-01)" in out
    # A store whose runs table agrees with its markers says nothing about it.
    clean = monitor(str(make_root(tmp_path / "clean", [good("r1", 1), good("r2", 2)])), tmp_path / "m2")
    assert clean.table_notes == [] and [r.row is not None for r in clean.records] == [True, True]
    assert "runs table and the committed runs do not agree" not in clean.outputs["page"].read_text()
    # A store scored before the runs table existed: one line for all its runs, not one per run every night.
    old = make_root(tmp_path / "old", [good(f"r{d}", d) for d in range(1, 8)])
    shutil.rmtree(old / RUNS_TABLE)
    (note,) = monitor(str(old), tmp_path / "m3").table_notes
    assert (
        "7 committed runs have no row in " in note and "from run r1 (dt=2026-03-01) to run r7 (dt=2026-03-07)" in note
    )


def test_plots_put_each_run_at_its_commit_time_with_dates_as_ticks(tmp_path):
    """Not evenly spaced categories: a run twelve days after the previous one sits twelve days away,
    its bar as wide as the others; the ticks are dates; the volume plot names every run above it."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from mnist_batch.monitoring import plots

    root = make_root(tmp_path, [good("a", 1), good("b", 2), good("c", 14, model_id=OTHER_ID)])
    records = monitor(str(root), tmp_path / "mon").records
    x = plots.run_times(records)
    assert np.allclose(np.diff(x), [1.0, 12.0]) and np.allclose(plots.bar_widths(x), 0.8)
    assert mdates.num2date(x[0]).isoformat() == "2026-03-01T02:00:00+00:00"
    fig, ax = plt.subplots()
    plots._x_axis(ax, records, x, run_ids=True)
    fig.canvas.draw()
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    low, high = (mdates.num2date(v) for v in ax.get_xlim())
    assert low.day == 28 and low.month == 2 and high.day == 14 and high.month == 3
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.isdigit() or t in ("Mar", "2026") for t in ticks), ticks  # days of March
    (top,) = ax.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["a", "b", "c"]
    (change,) = [line.get_xdata()[0] for line in ax.get_lines()]
    assert np.isclose(change, (x[1] + x[2]) / 2)  # the model change between b and c, on the time axis
    plt.close(fig)
    edges, columns = plots.run_columns(x, np.ones((CONFIDENCE_BINS, 3)))
    assert np.all(np.diff(edges) > 0) and columns.shape == (CONFIDENCE_BINS, 5) and columns.mask[:, 1::2].all()
    close = x[0] + np.array([0.0, 1 / 86400, 1.0, 2.0])  # a rerun one second after its run: cells still in order
    assert plots.bar_widths(close)[0] > 1 / 86400  # its bar still visible
    assert np.all(np.diff(plots.run_columns(close, np.ones((CONFIDENCE_BINS, 4)))[0]) >= 0)


def test_new_checks_are_in_all_and_documented():
    assert {"volume", "reference", "summary"} <= set(parse_fail_on("all")) == set(CHECKS)
    from mnist_batch.cli.monitor_cmd import DESCRIPTION

    for word in ("volume", "reference", "summary", "FALLBACK", "--min-volume-ratio (10 %)"):
        assert word in DESCRIPTION, word


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 800])
def test_page_in_a_browser_fits_loads_every_plot_and_links_flagged_runs(tmp_path, chromium, width):
    """What a person relies on, in headless Chromium: every plot decoded, nothing wider than the window
    (tables scroll in their own box), dt and run ids whole, each flagged run's link opening a file."""
    import re
    import urllib.parse

    long_id = "r20261122-nightly-0123456789abcdef"
    runs = [good(f"r{d}", d) for d in range(1, 6)]
    root = make_root(tmp_path, [*runs, ("2026-03-06", "broken", "{}"), good(long_id, 7, n=0)])
    (root / RUNS_DIR / "dt=2026-03-07" / f"run={long_id}" / "report.html").write_text("<p>report</p>")
    half = "half-committed-" + "0123456789abcdef" * 4  # a row without _SUCCESS: a long note under the banner
    write_runs_row(root, "2026-03-08", half, summary(half, committed_at="2026-03-08T02:00:00+00:00"))
    result = monitor(str(root), tmp_path / "mon")
    assert len(result.table_notes) == 2  # broken has no row either
    page = result.outputs["page"]
    html = page.read_text()
    links = re.findall(r"<a class='run' href='([^']+)'>([^<]+)</a>", html)
    assert {run for _, run in links} == {"broken", long_id}
    for href, run in links:
        target = pathlib.Path(urllib.parse.unquote(urllib.parse.urlparse(href).path))
        assert target.is_file() and f"run={run}" in str(target), href
    assert any(href.endswith("report.html") for href, run in links if run == long_id)
    assert "<td class='id'>2026-03-07</td><td class='id'><a class='run'" in html  # never broken mid-id
    size = f"--window-size={width},3000"
    dom = headless(chromium, tmp_path / "p", size, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    plots = html.count("<img ")
    assert plots == 5  # no labels in these runs: no accuracy plot
    assert f'data-images-loaded="{plots}/{plots}"' in dom.stdout and dom.stdout.count('data-loaded="1"') == plots
    assert 'data-too-wide="0::false"' in dom.stdout, re.findall(r'data-too-wide="[^"]*"', dom.stdout)
