"""``mnist-batch report`` on a real small scoring run: the numbers and images in it match the Parquet data."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch import metrics
from mnist_batch.cli import main as cli_main
from mnist_batch.config import ScoreConfig
from mnist_batch.report import ReportError, build_report, read_output
from mnist_batch.report.build import caption, least_confident_rows, misclassified_rows
from mnist_batch.report.inputs import row_image

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def scored(tiny_model, sample_data, tmp_path_factory):
    """Scores 60 real test digits (3 of them as scan-like photos) and one broken file with the Beam pipeline."""
    from mnist_batch.scoring.launch import run_scoring

    root = tmp_path_factory.mktemp("report")
    test = sample_data.split("test")
    rng = np.random.default_rng(0)
    for n, i in enumerate(range(0, 2000, 33)[:60]):
        d = root / "in" / str(int(test.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        image = scoring_fixtures.scan_like(test.images[i], rng) if n < 3 else test.images[i]
        Image.fromarray(image).save(d / f"{i:05d}.png")
    (root / "in" / "3" / "broken.png").write_bytes(b"not a png")
    out = root / "scored"
    run_scoring(ScoreConfig(model=str(tiny_model), inputs=(str(root / "in"),), output=str(out)))
    return out


@pytest.fixture(scope="module")
def report(scored):
    code = cli_main(["report", str(scored)])
    assert code == 0
    return scored / "report.html"


def _predictions(scored):
    return pq.read_table(scored / "predictions").to_pydict()


@pytest.mark.slow
def test_report_is_self_contained_with_every_plot(report, scored):
    page = report.read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for name in ("confusion", "per_class", "misclassified", "least_confident", "confidence", "reliability"):
        png = scored / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page
    assert "broken.png" in page  # the dead letter is listed


def test_numbers_in_the_report_match_the_parquet_data(report, scored):
    page = report.read_text()
    summary = json.loads((scored / "summary.json").read_text())
    pred = _predictions(scored)
    labels, predicted = np.array(pred["true_label"]), np.array(pred["predicted_label"])
    cm = metrics.confusion_matrix(labels, predicted, 10)
    assert f"{summary['accuracy']:.4f}" in page
    assert summary["accuracy"] == pytest.approx((labels == predicted).mean())
    per_class = pq.read_table(scored / "per_class").to_pylist()
    for row in per_class:
        cells = f"<td>{row['class_name']}</td><td>{row['support']:,}</td><td>{row['precision']:.4f}</td>"
        assert cells in page
    _, _, (data,) = read_output(scored)
    np.testing.assert_array_equal(data.confusion, cm)
    assert data.errors and data.errors[0]["path"].endswith("broken.png")


def test_image_grids_show_the_rows_the_parquet_says(scored):
    _, _, (data,) = read_output(scored)
    pred = _predictions(scored)
    wrong = {p for p, t, q in zip(pred["path"], pred["true_label"], pred["predicted_label"], strict=True) if t != q}
    assert {data.paths[i] for i in misclassified_rows(data)} == wrong
    low = least_confident_rows(data, limit=5)
    assert np.allclose(data.confidence[low], np.sort(pred["confidence"])[:5])
    for i in low:
        j = pred["path"].index(data.paths[i])
        assert (
            caption(data, i)
            == f"true {pred['true_class'][j]} → {pred['predicted_class'][j]} ({pred['confidence'][j]:.2f})"
        )
    # The grid shows the original file: a 200x260 scan stays a (thumbnailed) scan, not the 28x28 the model saw.
    scan = next(i for i, p in enumerate(data.paths) if Image.open(p).size != (28, 28))
    shown = row_image(data, scan)
    with Image.open(data.paths[scan]) as original:
        original.thumbnail((160, 160))
        np.testing.assert_array_equal(shown, np.asarray(original.convert("L")))
    plain = next(i for i, p in enumerate(data.paths) if Image.open(p).size == (28, 28))
    np.testing.assert_array_equal(row_image(data, plain), np.asarray(Image.open(data.paths[plain])))


def test_report_refuses_mixed_runs_and_non_outputs(scored, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    import shutil

    shutil.copytree(scored, mixed)
    table = pq.read_table(mixed / "predictions")
    rows = table.to_pydict()
    rows["predicted_label"] = [(p + 1) % 10 for p in rows["predicted_label"]]
    for f in (mixed / "predictions").glob("*.parquet"):
        f.unlink()
    pq.write_table(type(table).from_pydict(rows, schema=table.schema), mixed / "predictions" / "part-0.parquet")
    with pytest.raises(ReportError, match="confusion table"):
        build_report(mixed)
    assert cli_main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]


def test_learning_curve_report_from_a_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n1,0.80,0.70,0.85,0.50\n2,0.90,0.40,0.93,0.30\n3,0.95,0.20,0.94,0.25\n"
    )
    assert cli_main(["report", str(run)]) == 0
    assert "learning_curve.png" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert "<td>0.9400</td>" in page and "data:image/png;base64," in page
    assert Image.open(run / "learning_curve.png").size[0] > 300


def test_learning_curves_tick_whole_epochs(tmp_path, monkeypatch):
    """Three epochs: ticks at 1, 2, 3, not at 1.5 and 2.5 (an epoch has no halves)."""
    from mnist_batch import curves

    drawn = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, path: drawn.append(fig) or path)
    history = {"epoch": [1, 2, 3], "loss": [0.7, 0.4, 0.2], "val_accuracy": [0.85, 0.93, 0.94]}
    curves.plot_learning_curves(history, tmp_path / "lc.png")
    for ax in drawn[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks == [1, 2, 3], ticks


@pytest.mark.slow
def test_unlabelled_run_gets_confidence_plots_only(scored, tmp_path):
    import shutil

    import pyarrow as pa

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(scored, unlabelled)
    table = pq.read_table(unlabelled / "predictions")
    rows = table.to_pydict()
    rows["true_label"] = [None] * len(rows["path"])
    rows["true_class"] = [None] * len(rows["path"])
    for f in (unlabelled / "predictions").glob("*.parquet"):
        f.unlink()
    pq.write_table(pa.Table.from_pydict(rows, schema=table.schema), unlabelled / "predictions" / "part-0.parquet")
    shutil.rmtree(unlabelled / "confusion")
    for f in unlabelled.glob("*.png"):
        f.unlink()
    page = build_report(unlabelled).read_text()
    assert sorted(p.name for p in unlabelled.glob("*.png")) == ["confidence.png", "least_confident.png"]
    assert "per class" not in page and "Misclassified" not in page
    _, _, (data,) = read_output(unlabelled)
    assert caption(data, 0).startswith("→ ")


@pytest.mark.parametrize("width", [1400, 800])
@pytest.mark.slow
def test_report_page_in_a_browser_loads_every_plot_and_fits_the_window(report, chromium, tmp_path, width):
    """The report as a person sees it (headless Chromium): every plot decoded, no element wider than the
    window (long paths and model ids wrap), the commit time and the runtime file shown."""
    from browser import headless

    from mnist_batch.monitoring.page import LOAD_CHECK

    html = report.read_text()
    assert "committed at (UTC)" in html and "runtime file" in html and "<th>figure</th>" in html
    page = tmp_path / "report.html"  # a copy with the monitor page's measuring script
    page.write_text(html.replace("</body>", LOAD_CHECK + "</body>"))
    size = f"--window-size={width},3000"
    dom = headless(chromium, tmp_path / "p", size, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    plots = html.count("<img ")
    assert plots >= 6 and f'data-images-loaded="{plots}/{plots}"' in dom.stdout
    assert 'data-too-wide="0::false"' in dom.stdout, re.findall(r'data-too-wide="[^"]*"', dom.stdout)


@pytest.mark.parametrize("width", [1400, 800])
@pytest.mark.slow
def test_training_report_page_in_a_browser_loads_its_plot_and_fits_the_window(tmp_path, chromium, width):
    """The other page `report` writes (a training run dir), as a person sees it in headless Chromium."""
    from browser import headless

    from mnist_batch.monitoring.page import LOAD_CHECK

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n1,0.80,0.70,0.85,0.50\n2,0.90,0.40,0.93,0.30\n3,0.95,0.20,0.94,0.25\n"
    )
    assert cli_main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    page = tmp_path / "measured.html"
    page.write_text(html.replace("</body>", LOAD_CHECK + "</body>"))
    size = f"--window-size={width},2000"
    dom = headless(chromium, tmp_path / "p", size, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert html.count("<img ") == 1 and 'data-images-loaded="1/1"' in dom.stdout
    assert 'data-too-wide="0::false"' in dom.stdout, re.findall(r'data-too-wide="[^"]*"', dom.stdout)
