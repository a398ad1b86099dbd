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
