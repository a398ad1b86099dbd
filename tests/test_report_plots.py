"""Report plot functions write real PNGs from plain arrays."""

import csv

import numpy as np
import pytest
from PIL import Image

from mnist_batch import metrics, report


def _is_png(path, min_size=(200, 150)):
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
        # Not a blank canvas: a real plot has many distinct colours.
        assert len(np.unique(np.asarray(img.convert("L")))) > 10


def test_confusion_and_per_class_plots(tmp_path):
    cm = np.diag([50] * 10) + np.eye(10, k=1, dtype=int)
    names = [str(d) for d in range(10)]
    _is_png(report.plot_confusion(cm, names, tmp_path / "cm.png"))
    stats = metrics.per_class(cm)
    _is_png(report.plot_per_class(names, stats["precision"], stats["recall"], stats["f1"], tmp_path / "pc.png"))


@pytest.mark.slow
def test_image_grid_confidence_and_reliability(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (28, 28), dtype=np.uint8) for _ in range(10)]
    _is_png(report.plot_image_grid(images, [f"#{i}" for i in range(10)], tmp_path / "g.png", title="grid"))
    _is_png(report.plot_image_grid([], [], tmp_path / "empty.png", title="none"), min_size=(100, 50))
    conf = rng.uniform(0.3, 1.0, 500)
    correct = rng.uniform(size=500) < conf
    _is_png(report.plot_confidence_histogram(conf, correct, tmp_path / "h.png"))
    _is_png(report.plot_confidence_histogram(conf, None, tmp_path / "h2.png"))
    _is_png(report.plot_reliability(conf, correct, tmp_path / "r.png"))


def test_learning_curves_from_a_keras_csv_log(tmp_path):
    log = tmp_path / "history.csv"
    with open(log, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "accuracy", "loss", "val_accuracy", "val_loss"])
        for e in range(5):
            w.writerow([e, 0.9 + e / 100, 0.5 - e / 20, 0.91 + e / 120, 0.45 - e / 25])
    history = report.read_history_csv(log)
    assert history["val_accuracy"][-1] == pytest.approx(0.91 + 4 / 120)
    _is_png(report.plot_learning_curves(history, tmp_path / "lc.png"))
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,loss\n")
    with pytest.raises(ValueError, match="no epochs recorded"):
        report.read_history_csv(empty)


def test_html_page_is_self_contained(tmp_path):
    png = report.plot_reliability(np.array([0.9, 0.8]), np.array([True, False]), tmp_path / "r.png")
    page = report.html_page(
        "t <x>",
        [
            ("A", f"<img src='{report.png_data_uri(png)}'>"),
            ("B", report.html_table(["k", "v"], [["a", 0.5], ["b", 3]])),
        ],
    )
    assert "data:image/png;base64," in page and "t &lt;x&gt;" in page
    assert "<td>0.5000</td>" in page and "<td>3</td>" in page
    assert "src='http" not in page


def test_per_class_table_shows_absent_classes_as_na_and_says_how_macro_averages():
    """Labels of classes 0 and 1 only, three images predicted as 7: classes 2..9 have no F1 to show."""
    from types import SimpleNamespace

    from mnist_batch.report.build import per_class_table

    y_true = np.r_[np.zeros(50, int), np.ones(50, int)]
    y_pred = y_true.copy()
    y_pred[:3] = 7
    cm = metrics.confusion_matrix(y_true, y_pred, 10)
    data = SimpleNamespace(per_class=metrics.per_class(cm), confusion=cm, class_names=[str(d) for d in range(10)])
    page = per_class_table(data)
    rows = page.split("<tr>")[2:]
    assert rows[0].startswith("<td>0</td><td>50</td><td>1.0000</td><td>0.9400</td>")
    assert rows[5] == "<td>5</td><td>0</td><td>n/a</td><td>n/a</td><td>n/a</td></tr>"
    # Predicted but absent from the labels: precision 0 is a fact, recall and F1 are not defined.
    assert rows[7].startswith("<td>7</td><td>0</td><td>0.0000</td><td>n/a</td><td>n/a</td>")
    assert "classes present in the labels" in page and metrics.macro_f1(cm) > 0.98


def test_html_table_aligns_text_left_and_breaks_paths_only_at_slashes():
    table = report.html_table(["path", "stage", "n"], [["/data/scans/a_very_long_name.png", "decode", 3]])
    assert "<td>/<wbr>data/<wbr>scans/<wbr>a_very_long_name.png</td>" in table
    assert "<td class='text'>decode</td><td>3</td>" in table
    # A hash is no word: it breaks every 16 characters, so a 64-character model id cannot widen the page.
    ids = report.html_table(["figure", "value"], [["model_id", "ab" * 32]])
    assert "<td class='text'>" + "<wbr>".join(["ab" * 8] * 4) + "</td>" in ids
    page = report.html_page("t", [("T", table)])
    assert "td:first-child,th:first-child,td.text{text-align:left}" in page
    assert "overflow-wrap:anywhere" not in page  # that broke words mid-word
