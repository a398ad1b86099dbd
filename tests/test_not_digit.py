"""Issue #31: the not-a-digit check, from the generated sets to the prediction rows and the CLI flags."""

from __future__ import annotations

import datetime
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from mnist_batch import synthetic, trust
from mnist_batch.cli import main as cli_main
from mnist_batch.constants import MNIST_CLASS_NAMES, MODEL_INPUT_SHAPE, PREPROCESS_VERSION
from mnist_batch.model_card import ModelCard, ModelCardError, file_sha256, parse_card, write_card
from mnist_batch.tables import COL_NOT_DIGIT, COL_NOT_DIGIT_SCORE, prediction_columns

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


# --- generated sets ----------------------------------------------------------------------------


def test_negatives_are_seeded_mnist_format_and_every_kind_is_there():
    a = synthetic.negatives(20, seed=3)
    assert a.shape == (20, 28, 28) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic.negatives(20, seed=3))
    assert not np.array_equal(a, synthetic.negatives(20, seed=4))
    for kind in synthetic.NEGATIVE_KINDS:
        assert synthetic.negatives(2, seed=0, kinds=(kind,)).shape == (2, 28, 28)
    with pytest.raises(ValueError, match="unknown negative kind"):
        synthetic.negatives(1, seed=0, kinds=("cats",))


def test_font_roles_are_disjoint():
    roles = [set(synthetic.font_files(r)) for r in synthetic.FONT_ROLES]
    assert not (roles[0] & roles[1]) and not (roles[0] & roles[2]) and not (roles[1] & roles[2])
    with pytest.raises(ValueError):
        synthetic.font_files("test")


def test_no_digit_shaped_glyph_is_drawn_as_a_non_digit():
    assert not set("0123456789OoIl1SZzBgqb") & set(synthetic.GLYPHS)


def test_every_corruption_keeps_shape_and_changes_the_images(sample_data):
    digits = sample_data.split("test").images[:16]
    for kind in synthetic.CORRUPTIONS:
        out = synthetic.corrupt(digits, kind, seed=1)
        assert out.shape == digits.shape and out.dtype == np.uint8, kind
        assert not np.array_equal(out, digits), kind
    with pytest.raises(ValueError, match="unknown corruption"):
        synthetic.corrupt(digits, "smudge")


# --- outputs, thresholds, cards ----------------------------------------------------------------


def test_split_outputs_renormalises_the_classes_and_returns_the_score():
    out = np.array([[0.1, 0.1, 0.3, 0.5], [0.6, 0.2, 0.1, 0.1]], np.float32)
    probs, score = trust.split_outputs(out, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0], [0.2, 0.2, 0.6], rtol=1e-6)
    np.testing.assert_allclose(score, [0.5, 0.1])
    same, none = trust.split_outputs(out, 4)
    assert none is None and same is not None
    with pytest.raises(ValueError, match="expected 2 or \\+1"):
        trust.split_outputs(out, 2)


def test_choose_threshold_keeps_clean_digits_within_the_budget():
    digits = np.concatenate([np.full(990, 0.001), np.full(10, 0.2)])  # 1 % of digits score 0.2
    negatives = np.full(100, 0.9)
    chosen = trust.choose_threshold(digits, negatives, budget=0.005)
    assert chosen["threshold"] > 0.2 and chosen["validation_digits_flagged"] == 0.0
    assert chosen["validation_negatives_flagged"] == 1.0
    assert trust.choose_threshold(digits, negatives, budget=0.02)["threshold"] == 0.01


@pytest.mark.parametrize(
    "entry, message",
    [
        ("0.5", "must be an object"),
        ({"output_index": 3, "threshold": 0.5}, "output_index must be 10"),
        ({"output_index": 10, "threshold": 1.5}, "threshold must be in"),
        ({"output_index": 10, "threshold": "x"}, "threshold must be a number"),
        ({"output_index": 10}, "threshold must be a number"),
        ({"output_index": 10, "threshold": float("nan")}, "threshold must be a number"),
    ],
)
def test_a_damaged_not_digit_entry_is_refused_with_the_card_named(entry, message):
    card = {
        "model_name": "m",
        "model_id": "0" * 64,
        "class_names": list(MNIST_CLASS_NAMES),
        "input_shape": [28, 28, 1],
        "preprocess_version": PREPROCESS_VERSION,
        "not_digit": entry,
    }
    with pytest.raises(ModelCardError, match=message) as info:
        parse_card(json.dumps(card), where="models/x.card.json")
    assert "models/x.card.json" in str(info.value)


def test_prediction_rows_carry_the_flag_and_its_score_or_nulls_for_an_old_model():
    outputs = np.zeros((3, 11), np.float32)
    outputs[:, 0] = [0.95, 0.5, 0.01]
    outputs[:, 10] = [0.05, 0.5, 0.99]
    kw = dict(class_names=MNIST_CLASS_NAMES, model_id="m", run_id="r", review_threshold=0.9, scored_at=NOW)
    cols = prediction_columns(["a", "b", "c"], [0, None, None], [False] * 3, outputs, not_digit_threshold=0.3, **kw)
    assert cols[COL_NOT_DIGIT].to_pylist() == [False, True, True]
    np.testing.assert_allclose(cols[COL_NOT_DIGIT_SCORE].to_numpy(), [0.05, 0.5, 0.99], rtol=1e-6)
    assert cols["confidence"].to_pylist() == [1.0, 1.0, 1.0]  # renormalised over the ten digits
    old = prediction_columns(["a", "b", "c"], [0, None, None], [False] * 3, outputs[:, :10], **kw)
    assert old[COL_NOT_DIGIT].null_count == 3 and old[COL_NOT_DIGIT_SCORE].null_count == 3


def test_risk_coverage_falls_as_the_threshold_rises():
    rng = np.random.default_rng(0)
    confidence = rng.random(500)
    correct = rng.random(500) < confidence  # the confident are more often right
    curve = trust.risk_coverage(confidence, correct, not_digit=confidence < 0.05)
    assert curve["coverage"][0] < 1.0 and curve["coverage"] == sorted(curve["coverage"], reverse=True)
    assert curve["risk"][-3] < curve["risk"][0]


# --- Beam: the rows and the counts -------------------------------------------------------------


def test_format_and_stats_count_not_digit_rows_in_a_pipeline():
    import apache_beam as beam
    from apache_beam.ml.inference.base import PredictionResult

    from mnist_batch.scoring.decode import ImageKey
    from mnist_batch.scoring.format import FormatGroupsFn
    from mnist_batch.scoring.stats import PredictionStatsFn

    outputs = np.zeros((4, 11), np.float32)
    outputs[:, 3] = [0.9, 0.2, 0.6, 0.0]
    outputs[:, 10] = 1.0 - outputs[:, 3]
    keys = [ImageKey(f"/x/{i}.png", 3, False) for i in range(4)]

    def run(threshold):
        with BeamTestPipeline() as p:
            fn = FormatGroupsFn(MNIST_CLASS_NAMES, "m", "r", 0.9, not_digit_threshold=threshold)
            stats = (
                p
                | beam.Create([PredictionResult(keys, outputs, "m")])
                | beam.ParDo(fn)
                | beam.CombineGlobally(PredictionStatsFn(10))
                | beam.Map(lambda s: (s["scored"], s["not_digit"]))
            )
            assert_that(stats, equal_to([(4, 2 if threshold else None)]))

    run(0.5)  # 0.8 and 1.0 are at least 0.5; 0.1 and 0.4 are not
    run(None)


# --- training side -----------------------------------------------------------------------------


def test_random_damage_keeps_range_and_only_touches_the_picked_share():
    import tensorflow as tf

    from mnist_batch.training.augment import random_damage

    x = tf.random.stateless_uniform([64, 28, 28, 1], [1, 2])
    seed = tf.constant([3, 4], tf.int64)
    out = random_damage(x, seed, 0.5).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - x.numpy()).reshape(64, -1).max(axis=1) > 0
    assert 10 < changed.sum() < 54
    np.testing.assert_array_equal(out, random_damage(x, seed, 0.5).numpy())
    np.testing.assert_array_equal(random_damage(x, seed, 0.0).numpy(), x.numpy())


def test_with_negatives_adds_the_extra_class(sample_data):
    from mnist_batch.data.base import Split
    from mnist_batch.training.not_digit import with_negatives

    train = sample_data.split("train")
    small = Split(train.images[:100], train.labels[:100])
    grown, n = with_negatives(small, 10, 0.2, seed=1)
    assert n == 20 and len(grown) == 120 and (grown.labels[100:] == 10).all()
    assert with_negatives(small, 10, 0.0, seed=1) == (small, 0)


# --- a model with the check, through score / predict / evaluate --------------------------------


@pytest.fixture(scope="module")
def checked_model(tmp_path_factory):
    """An 11-output model (untrained: the flag only has to follow the score) with a card threshold."""
    path = scoring_fixtures.save_untrained_checked_model(tmp_path_factory.mktemp("checked") / "checked.keras", 5)
    card = ModelCard(
        model_name="checked",
        model_id=file_sha256(path),
        class_names=MNIST_CLASS_NAMES,
        input_shape=MODEL_INPUT_SHAPE,
        preprocess_version=PREPROCESS_VERSION,
        dataset="sample",
        not_digit={"output_index": 10, "threshold": 0.09},
    )
    write_card(card, path)
    return path


@pytest.fixture(scope="module")
def images(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("nd_imgs")
    test = sample_data.split("test")
    for i in range(10):
        (root / str(int(test.labels[i]))).mkdir(exist_ok=True)
        Image.fromarray(test.images[i]).save(root / str(int(test.labels[i])) / f"{i}.png")
    (root / "noise").mkdir()
    for i, img in enumerate(synthetic.negatives(5, seed=9)):
        Image.fromarray(img).save(root / "noise" / f"n{i}.png")
    return root


def test_score_writes_the_flag_and_counts_it(checked_model, images, tmp_path, capsys):
    import keras

    out = tmp_path / "out"
    code = cli_main(["score", "--model", str(checked_model), "--input", str(images), "--output", str(out)])
    assert code == 0
    table = pq.read_table(out / "predictions").to_pydict()
    summary = json.loads((out / "summary.json").read_text())
    model = keras.models.load_model(checked_model)
    pixels = np.stack([np.asarray(Image.open(p)) for p in table["path"]]).astype(np.float32) / 255.0
    scores = model.predict(pixels[..., None], verbose=0)[:, 10]
    np.testing.assert_allclose(table[COL_NOT_DIGIT_SCORE], scores, atol=1e-5)
    assert table[COL_NOT_DIGIT] == [bool(s >= 0.09) for s in scores]
    assert summary["counts"]["not_digit"] == sum(table[COL_NOT_DIGIT])
    assert summary["not_digit_threshold"] == 0.09 and summary["not_digit_threshold_source"] == "model card"
    assert "not-digit check: not_digit_score >= 0.09 (model card)" in capsys.readouterr().out
    assert cli_main(["report", str(out)]) == 0  # the count in the summary table, and the risk-coverage curve
    page = (out / "report.html").read_text()
    assert "not a digit (" in page and "0.09" in page and "Risk–coverage" in page
    assert (out / "risk_coverage.png").stat().st_size > 0

    again = ["--input", str(images), "--output", str(tmp_path / "o2"), "--not-digit-threshold", "1"]
    code = cli_main(["score", "--model", str(checked_model), *again])
    assert code == 0
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["counts"]["not_digit"] == sum(
        s >= 1.0 for s in scores
    )


def test_an_old_card_still_scores_with_a_null_column_and_one_line(tiny_model, images, tmp_path, capsys):
    code = cli_main(["score", "--model", str(tiny_model), "--input", str(images), "--output", str(tmp_path / "o")])
    assert code == 0
    table = pq.read_table(tmp_path / "o" / "predictions")
    assert table.column(COL_NOT_DIGIT).null_count == table.num_rows
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["counts"]["not_digit"] is None
    assert capsys.readouterr().out.count("not-digit check: none") == 1


@pytest.mark.parametrize("value, message", [("1.5", "must be in (0, 1]"), ("0", "must be in (0, 1]")])
def test_a_threshold_out_of_range_is_exit_2_naming_the_flag(checked_model, images, tmp_path, capsys, value, message):
    base = ["--model", str(checked_model), "--not-digit-threshold", value]
    assert cli_main(["score", *base, "--input", str(images), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--not-digit-threshold" in err and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert cli_main(["predict", str(next(images.glob("*/*.png"))), *base]) == 2
    assert "--not-digit-threshold" in capsys.readouterr().err
    assert cli_main(["evaluate", *base, "--output", str(tmp_path / "e")]) == 2
    assert "--not-digit-threshold" in capsys.readouterr().err


def test_a_threshold_that_is_not_a_number_is_exit_2_naming_the_flag(checked_model, images, tmp_path, capsys):
    args = ["--input", str(images), "--output", str(tmp_path / "o"), "--not-digit-threshold", "high"]
    with pytest.raises(SystemExit) as info:
        cli_main(["score", "--model", str(checked_model), *args])
    assert info.value.code == 2 and "--not-digit-threshold" in capsys.readouterr().err


def test_a_card_with_damaged_thresholds_is_refused_before_scoring(checked_model, images, tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(checked_model.read_bytes())
    card = json.loads(checked_model.with_name("checked.card.json").read_text())
    card["not_digit"]["threshold"] = 7
    (tmp_path / "broken.card.json").write_text(json.dumps(card))
    assert cli_main(["score", "--model", str(broken), "--input", str(images), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.card.json" in err and "not_digit.threshold" in err
    assert not (tmp_path / "o" / "predictions").exists()


def test_predict_shows_the_flag(checked_model, images, capsys):
    files = sorted(str(p) for p in images.glob("*/*.png"))
    assert cli_main(["predict", *files[:3], "--model", str(checked_model), "--not-digit-threshold", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.count("[not a digit: score") == 3  # every score of an 11-way softmax is above 0.01


def test_evaluate_trust_report_on_generated_sets(checked_model, tmp_path, capsys, monkeypatch):
    from mnist_batch.evaluation import trust as et

    monkeypatch.setattr(et, "NEGATIVES_PER_KIND", 20)
    monkeypatch.setattr(et, "fashion_images", lambda: None)
    out = tmp_path / "e"
    code = cli_main(
        [
            "evaluate",
            "--model",
            str(checked_model),
            "--output",
            str(out),
            "--trust",
            "--no-report",
            "--runtime",
            "keras",
        ]
    )
    assert code == 0
    rows = pq.read_table(out / "trust.parquet").to_pylist()
    non_digits = [et.NON_DIGIT_NAMES.get(k, k) for k in synthetic.NEGATIVE_KINDS]
    assert [r["set"] for r in rows] == ["clean", *synthetic.CORRUPTIONS, *non_digits]
    assert all(0 <= r["wrong_unflagged"] <= 1 - r["flagged"] + 1e-9 for r in rows)
    assert all(r["accuracy"] is None for r in rows if r["kind"] == "non-digit")
    assert (out / "trust.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "Trust report: checked" in text and "not a digit (score >= 0.09)" in text
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()[0]
    assert metrics["not_digit_threshold"] == 0.09 and 0 <= metrics["not_digit_rate"] <= 1


# --- monitoring --------------------------------------------------------------------------------


def test_the_monitor_alerts_when_the_not_digit_rate_rises(tmp_path, capsys):
    import test_monitor_verdicts as mv

    from mnist_batch.monitoring.monitor import monitor

    def night(run, day, flagged):
        data = mv.summary(run, committed_at=f"2026-03-{day:02d}T02:00:00+00:00")
        data["counts"]["not_digit"] = flagged
        data["model_reference"]["not_digit_rate"] = 0.01
        return f"2026-03-{day:02d}", run, data

    old = mv.good("old", 1)  # a run before the check: no count, nothing to judge
    root = mv.make_root(tmp_path, [old, night("calm", 2, 20), night("flood", 3, 300)])
    checks = mv.by_run(monitor(str(root), tmp_path / "mon"))
    assert checks["old"]["not_digit"].status == "ok" and checks["old"]["not_digit"].value is None
    assert checks["calm"]["not_digit"].status == "ok" and checks["calm"]["not_digit"].value == 0.02
    assert checks["flood"]["not_digit"].status == "alert" and "not-digit rate 30.0% vs 1.0%" in (
        checks["flood"]["not_digit"].reason
    )
    runs = pq.read_table(tmp_path / "mon" / "runs.parquet").to_pydict()
    assert runs["not_digit"] == [None, 20, 300] and runs["not_digit_rate"][2] == 0.3
    assert cli_main(["monitor", str(root), "--output", str(tmp_path / "c"), "--fail-on", "not_digit"]) == 5
    assert "not_digit" in capsys.readouterr().err


def test_the_runs_table_row_carries_the_not_digit_count():
    from mnist_batch.tables import RUNS_SCHEMA, runs_row

    summary = {"run_id": "r1", "model_id": "m", "committed_at": "2026-12-07T04:00:00+00:00"}
    row = runs_row({**summary, "counts": {"matched": 3, "scored": 3, "not_digit": 2}})
    assert row[COL_NOT_DIGIT] == 2 and RUNS_SCHEMA.field(COL_NOT_DIGIT).nullable
    assert runs_row({**summary, "counts": {"matched": 3, "scored": 3}})[COL_NOT_DIGIT] is None  # an older model


def test_a_card_written_with_a_check_reads_back_with_one_more_output(tmp_path):
    card = ModelCard(
        model_name="m",
        model_id="0" * 64,
        class_names=MNIST_CLASS_NAMES,
        input_shape=MODEL_INPUT_SHAPE,
        preprocess_version=PREPROCESS_VERSION,
        not_digit={"output_index": 10, "threshold": 0.04, "budget": 0.005},
    )
    again = parse_card(card.to_json(), where="x")
    assert again.num_outputs == 11 and again.not_digit_check().threshold == 0.04
    assert parse_card(json.dumps({**json.loads(card.to_json()), "not_digit": None}), where="x").num_outputs == 10
