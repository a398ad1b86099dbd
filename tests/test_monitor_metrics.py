"""``monitor --metrics-file``: the latest run's figures in Prometheus' text format, read back with the
reference parser (prometheus_client), written whole, refused before any work when the collector could
never read it. Synthetic run stores (summaries only, no Beam), as in test_monitor_verdicts.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_monitor_verdicts import MIX, good, make_root

from mnist_batch.cli import main as cli_main

parser = pytest.importorskip("prometheus_client.parser")


def read_metrics(path) -> dict[str, list]:
    """Family name -> its samples, parsed by prometheus_client's text-format parser."""
    families = parser.text_string_to_metric_families(path.read_text(encoding="utf-8"))
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in families}


def value(metrics: dict, name: str, **labels) -> float:
    found = [v for lab, v in metrics[name] if all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, metrics.get(name))
    return found[0]


def test_the_latest_runs_figures_and_verdict_as_a_collector_reads_them(tmp_path, capsys):
    drifted = np.r_[MIX[:5] * 2, MIX[5:] // 5]
    root = make_root(tmp_path, [good("r1", 1), good("r2", 2), good("r3", 3, mix=drifted)])
    prom = tmp_path / "collector" / "mnist_batch.prom"
    prom.parent.mkdir()
    prom.write_text("stale content the collector must never see half of\n")
    argv = ["monitor", str(root), "--output", str(tmp_path / "mon"), "--fail-on", "drift", "--metrics-file", str(prom)]
    assert cli_main(argv) == 5
    assert str(prom) in capsys.readouterr().out
    m = read_metrics(prom)
    root_label = str(root)
    assert value(m, "mnist_batch_monitor_runs", root=root_label) == 3
    assert value(m, "mnist_batch_latest_run_info", root=root_label, run="r3", dt="2026-03-03") == 1
    assert value(m, "mnist_batch_latest_run_files", root=root_label, outcome="scored") == 1000
    assert value(m, "mnist_batch_latest_run_files", root=root_label, outcome="errors") == 0
    assert value(m, "mnist_batch_latest_run_status", root=root_label) == 2  # alert
    assert value(m, "mnist_batch_latest_run_check_status", root=root_label, check="class_mix") == 2
    assert value(m, "mnist_batch_latest_run_check_status", root=root_label, check="errors") == 0
    assert value(m, "mnist_batch_latest_run_check_value", root=root_label, check="class_mix") > 0.25  # the PSI
    assert value(m, "mnist_batch_latest_run_failed", root=root_label) == 1
    committed = value(m, "mnist_batch_latest_run_committed_timestamp_seconds", root=root_label)
    assert committed == 1772503200.0  # 2026-03-03T02:00:00Z
    assert value(m, "mnist_batch_monitor_last_run_timestamp_seconds", root=root_label) > committed
    assert [n for n in os.listdir(prom.parent)] == ["mnist_batch.prom"]  # no temporary file left


def test_a_quiet_night_is_status_0_and_an_empty_root_only_says_when_the_monitor_ran(tmp_path):
    quiet = make_root(tmp_path / "a", [good("r1", 1), good("r2", 2)])
    prom = tmp_path / "quiet.prom"
    assert cli_main(["monitor", str(quiet), "--output", str(tmp_path / "m1"), "--metrics-file", str(prom)]) == 0
    m = read_metrics(prom)
    assert value(m, "mnist_batch_latest_run_status", root=str(quiet)) == 0
    assert value(m, "mnist_batch_latest_run_failed", root=str(quiet)) == 0
    empty = make_root(tmp_path / "b", [])
    assert cli_main(["monitor", str(empty), "--output", str(tmp_path / "m2"), "--metrics-file", str(prom)]) == 0
    m = read_metrics(prom)
    assert value(m, "mnist_batch_monitor_runs", root=str(empty)) == 0
    assert "mnist_batch_monitor_last_run_timestamp_seconds" in m and "mnist_batch_latest_run_status" not in m


def test_label_values_are_escaped(tmp_path):
    from mnist_batch.monitoring.metrics import prometheus_text
    from mnist_batch.monitoring.monitor import monitor

    root = make_root(tmp_path / 'odd "root" \\ here', [good("r1", 1)])
    text = prometheus_text(str(root), monitor(str(root), tmp_path / "m"), ())
    prom = tmp_path / "odd.prom"
    prom.write_text(text)
    assert value(read_metrics(prom), "mnist_batch_monitor_runs", root=str(root)) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("metrics.txt", "must end in .prom (node_exporter's textfile collector reads only those)"),
        ("missing/metrics.prom", "is not a writable folder"),
    ],
)
def test_a_metrics_file_the_collector_could_not_read_is_refused_before_any_work(tmp_path, capsys, name, message):
    root = make_root(tmp_path, [good("r1", 1)])
    out = tmp_path / "mon"
    assert cli_main(["monitor", str(root), "--output", str(out), "--metrics-file", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists() and not (tmp_path / name).exists()
