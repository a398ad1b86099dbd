"""``mnist-batch evaluate``: metrics against the model's own outputs, the comparison, folder inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch import metrics
from mnist_batch.cli import main as cli_main
from mnist_batch.evaluation import EvaluationError, evaluate
from mnist_batch.preprocess import normalize

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def weaker_model(tmp_path_factory):
    """A second, weaker model (one epoch, another seed) to compare against the first."""
    return scoring_fixtures.train_tiny_model(tmp_path_factory.mktemp("weaker"), name="weaker", epochs=1, seed=1)


@pytest.fixture(scope="module")
def evaluated(tiny_model, weaker_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    code = cli_main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--model",
            str(weaker_model),
            "--dataset",
            "sample",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_metrics_match_the_models_own_outputs(evaluated, tiny_model, sample_data):
    import keras

    test = sample_data.split("test")
    probs = keras.saving.load_model(tiny_model).predict(normalize(test.images), verbose=0)
    predicted = probs.argmax(axis=1)
    row = pq.read_table(evaluated / "metrics.parquet").to_pylist()[0]
    assert row["model"] == "tiny" and row["examples"] == len(test) == 2000
    cm = metrics.confusion_matrix(test.labels, predicted, 10)
    assert row["accuracy"] == pytest.approx((predicted == test.labels).mean())
    assert row["macro_f1"] == pytest.approx(metrics.macro_f1(cm), abs=1e-6)
    assert row["top2_accuracy"] == pytest.approx(metrics.top_k_accuracy(test.labels, probs, 2), abs=1e-3)
    assert row["log_loss"] == pytest.approx(metrics.log_loss(test.labels, probs), rel=1e-3)
    conf, correct = probs.max(axis=1), predicted == test.labels
    assert row["ece"] == pytest.approx(metrics.expected_calibration_error(conf, correct), abs=1e-3)
    assert row["error_rate_at_coverage"] == pytest.approx(
        metrics.error_rate_at_coverage(conf, correct, 0.98)["error_rate"], abs=1e-3
    )
    assert 0.8 < row["accuracy"] < 1.0 and row["images_per_s"] > 0
    cells = [r for r in pq.read_table(evaluated / "confusion.parquet").to_pylist() if r["model"] == "tiny"]
    got = np.zeros((10, 10), np.int64)
    for r in cells:
        got[r["true_label"], r["predicted_label"]] = r["count"]
    np.testing.assert_array_equal(got, cm)
    per_class = [r for r in pq.read_table(evaluated / "per_class.parquet").to_pylist() if r["model"] == "tiny"]
    assert [r["support"] for r in per_class] == np.bincount(test.labels, minlength=10).tolist()
    stats = metrics.per_class(cm)
    np.testing.assert_allclose([r["recall"] for r in per_class], stats["recall"])


@pytest.mark.slow
def test_comparison_table_and_mcnemar_from_the_paired_predictions(evaluated):
    rows = pq.read_table(evaluated / "metrics.parquet").to_pylist()
    assert [r["model"] for r in rows] == ["tiny", "weaker"]
    assert rows[0]["mcnemar_p"] is None
    preds = pq.read_table(evaluated / "predictions.parquet").to_pandas()
    a = preds[preds.model == "tiny"].sort_values("index")
    b = preds[preds.model == "weaker"].sort_values("index")
    np.testing.assert_array_equal(a.true_label.to_numpy(), b.true_label.to_numpy())
    test = metrics.mcnemar(
        (a.predicted_label == a.true_label).to_numpy(), (b.predicted_label == b.true_label).to_numpy()
    )
    assert rows[1]["mcnemar_first_only"] == test["a_only"] and rows[1]["mcnemar_this_only"] == test["b_only"]
    assert rows[1]["mcnemar_p"] == pytest.approx(test["p_value"])
    assert rows[1]["significant"] == (test["p_value"] < 0.05)
    md = (evaluated / "comparison.md").read_text()
    assert "| tiny | " in md and "| weaker | " in md and f"{rows[1]['accuracy']:.4f}" in md
    assert f"p = {test['p_value']:.3g}" in md
    summary = json.loads((evaluated / "evaluation.json").read_text())
    assert summary["kind"] == "evaluation" and summary["class_names"] == [str(d) for d in range(10)]
    # One table contract: the scoring row (path null for arrays) plus the declared extras.
    from mnist_batch.tables import EVALUATION_EXTRAS, EVALUATION_PREDICTIONS_SCHEMA, PREDICTIONS_SCHEMA

    schema = pq.read_schema(evaluated / "predictions.parquet")
    assert schema.equals(EVALUATION_PREDICTIONS_SCHEMA, check_metadata=False)
    assert set(schema.names) == set(PREDICTIONS_SCHEMA.names) | {f.name for f in EVALUATION_EXTRAS}
    cards = {r["model"]: r["model_id"] for r in rows}
    assert (preds.model.map(cards) == preds.model_id).all() and preds.path.isna().all()
    assert preds.run_id.nunique() == 1 and preds.run_id.iloc[0].startswith("e")
    # The plots are written by the same report code as `mnist-batch report`.
    assert (evaluated / "report.html").is_file()


@pytest.mark.slow
def test_folder_goes_through_scoring_and_matches_arrays(tiny_model, sample_data, tmp_path):
    """PNG files of MNIST-format digits pass scoring's preprocessing unchanged: same predictions as arrays."""
    test = sample_data.split("test")
    pick = np.arange(0, len(test), 25)  # 80 images, every class
    folder = tmp_path / "images"
    for i in pick:
        d = folder / str(int(test.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(d / f"{i:05d}.png")
    summary = evaluate([str(tiny_model)], f"folder:{folder}", "test", tmp_path / "out")
    assert summary["source"].startswith("scoring pipeline")
    preds = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pylist()
    assert len(preds) == pick.size and all(p["path"] for p in preds)
    assert not any(p["blank"] for p in preds) and all(p["pixels"] is None for p in preds)
    import keras

    probs = keras.saving.load_model(tiny_model).predict(normalize(test.images[pick]), verbose=0)
    by_index = {int(p["path"].rsplit("/", 1)[1].split(".")[0]): p for p in preds}
    for j, i in enumerate(pick):
        assert by_index[int(i)]["true_label"] == test.labels[i]
        assert by_index[int(i)]["predicted_label"] == probs[j].argmax()
        assert by_index[int(i)]["confidence"] == pytest.approx(probs[j].max(), abs=1e-5)


@pytest.fixture(scope="module")
def renamed_model(tmp_path_factory):
    names = tuple(f"c{i}" for i in range(10))
    return scoring_fixtures.train_tiny_model(
        tmp_path_factory.mktemp("renamed"), name="renamed", epochs=1, class_names=names
    )


@pytest.mark.slow
def test_refuses_models_whose_classes_differ_from_the_data(renamed_model, tiny_model, tmp_path, capsys):
    code = cli_main(["evaluate", "--model", str(renamed_model), "--dataset", "sample", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "differ from sample" in err[0]
    with pytest.raises(EvaluationError, match="earlier evaluation"):
        (tmp_path / "again").mkdir()
        (tmp_path / "again" / "metrics.parquet").write_bytes(b"x")
        evaluate([str(tiny_model)], "sample", "test", tmp_path / "again")


@pytest.mark.slow
def test_class_names_option_names_the_data_sets_classes(renamed_model, tmp_path, capsys):
    names_file = tmp_path / "classes.txt"
    names_file.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    for i, value in enumerate((",".join(f"c{i}" for i in range(10)), str(names_file))):
        out = tmp_path / f"out{i}"
        args = ["--dataset", "sample", "--class-names", value, "--output", str(out), "--no-report"]
        assert cli_main(["evaluate", "--model", str(renamed_model), *args]) == 0
        rows = pq.read_table(out / "per_class.parquet").to_pylist()
        assert [r["class_name"] for r in rows] == [f"c{i}" for i in range(10)]
    assert cli_main(["data", "info", "sample", "--class-names", "a,b"]) == 2
    assert "gives 2 names but sample has 10 classes" in capsys.readouterr().err


def test_plain_directory_and_folder_spec_are_scored_as_files(tmp_path):
    """``--dataset DIR`` (no prefix) is a folder of images too; ``DIR/<split>/`` is used when present."""
    from mnist_batch.evaluation.run import resolve_data
    from mnist_batch.model_card import ModelCard

    card = ModelCard(
        model_name="m", model_id="x", class_names=tuple("0123456789"), input_shape=(28, 28, 1), preprocess_version="1"
    )
    plain = tmp_path / "scans"
    (plain / "3").mkdir(parents=True)
    data = resolve_data(str(plain), "test", card)
    assert data.folder == str(plain) and data.images is None and data.class_names == card.class_names
    assert resolve_data(f"folder:{plain}", "test", card).folder == str(plain)
    (plain / "test" / "3").mkdir(parents=True)
    assert resolve_data(str(plain), "test", card).folder == str(plain / "test")
    with pytest.raises(EvaluationError, match="no such directory"):
        resolve_data(f"folder:{tmp_path / 'missing'}", "test", card)
    # A name that is neither a directory nor a data set spec is a data set error, not a folder.
    with pytest.raises(Exception, match="nope"):
        resolve_data(str(tmp_path / "nope"), "test", card)


def test_two_model_report_is_one_side_by_side_page(evaluated):
    """Two models: a comparison table (not raw Markdown) and each plot with the models next to each other."""
    page = (evaluated / "report.html").read_text()
    assert "<pre>" not in page
    comparison = page.split("<h2>Comparison</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<th>tiny</th><th>weaker</th>" in comparison and "McNemar" in comparison and "<li>" in comparison
    assert "<h2>Per-class F1</h2>" in page
    for title in ("Confusion matrix", "Reliability diagram", "Misclassified images"):
        section = page.split(f"<h2>{title}, side by side</h2>", 1)[1].split("<h2>", 1)[0]
        assert section.count("<figure>") == 2 and "<figcaption>tiny</figcaption>" in section
    headings = page.split("<h2>")[1:]
    assert not [h for h in headings if "tiny" in h.split("</h2>")[0]]  # headings do not repeat the model name


@pytest.mark.slow
def test_a_folder_evaluation_says_which_files_it_left_out(tiny_model, sample_data, tmp_path, capsys):
    """Unreadable, non-image and unlabelled files are counted and named by kind, never dropped without a word."""
    test = sample_data.split("test")
    for i in range(6):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    (tmp_path / "in" / "unsorted").mkdir()
    Image.fromarray(test.images[6]).save(tmp_path / "in" / "unsorted" / "6.png")
    (tmp_path / "in" / str(test.labels[0]) / "broken.png").write_bytes(b"not a png")
    (tmp_path / "in" / "notes.txt").write_text("hello")
    argv = ["evaluate", "--model", str(tiny_model), "--dataset", f"folder:{tmp_path / 'in'}", "--output"]
    assert cli_main([*argv, str(tmp_path / "out"), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert (
        f"evaluate: folder:{tmp_path / 'in'}: 9 files, 6 evaluated; left out: 1 unreadable or not decodable, "
        "1 skipped (not an image extension, links, tool outputs), 1 in a folder that names no class"
    ) in out
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["left_out"] == {"files": 9, "evaluated": 6, "errors": 1, "skipped": 1, "unlabelled": 1}


@pytest.mark.slow
def test_overwrite_removes_what_the_earlier_evaluation_wrote(tiny_model, weaker_model, tmp_path):
    """A second evaluation with --overwrite leaves no plot of a model it did not evaluate for the report to list."""
    out = tmp_path / "out"
    assert cli_main(["evaluate", "--model", str(tiny_model), "--model", str(weaker_model), "--output", str(out)]) == 0
    assert any(p.name.startswith("weaker_") for p in out.glob("*.png"))
    mine = out / "my_notes.txt"
    mine.write_text("kept")
    assert cli_main(["evaluate", "--model", str(tiny_model), "--output", str(out), "--overwrite"]) == 0
    assert not any("weaker" in p.name for p in out.iterdir()), sorted(p.name for p in out.iterdir())
    assert "weaker" not in (out / "report.html").read_text() and mine.read_text() == "kept"
