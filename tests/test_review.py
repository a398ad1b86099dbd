"""The review threshold: chosen at export on damaged validation digits, kept in the card, used by every reader."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnist_batch import review, synthetic
from mnist_batch.cli import main as cli_main
from mnist_batch.constants import MNIST_CLASS_NAMES, MODEL_INPUT_SHAPE, PREPROCESS_VERSION
from mnist_batch.model_card import ModelCard, ModelCardError, file_sha256, parse_card, write_card

import scoring_fixtures

pytest_plugins = ["scoring_fixtures"]


def outcome(confidence, correct, not_digit=None):
    return (
        np.asarray(confidence, np.float64),
        np.asarray(correct, bool),
        None if not_digit is None else np.asarray(not_digit),
    )


def test_the_lowest_threshold_that_keeps_every_damaged_set_within_the_budget_is_chosen():
    # 100 digits a set: set a's wrong answers sit at 0.70 and 0.85, set b's at 0.60 and 0.80.
    right = [0.99] * 98
    a = outcome([*right, 0.70, 0.85], [True] * 98 + [False, False])
    b = outcome([*right, 0.60, 0.80], [True] * 98 + [False, False])
    clean = outcome([0.99] * 99 + [0.65], [True] * 100)
    # Budget 1 %: one wrong answer a set may stay unflagged; a needs 0.71 (0.70 flagged), b 0.61.
    entry = review.choose_review_threshold({"a": a, "b": b}, clean, budget=0.01)
    assert entry["threshold"] == 0.71 and entry["met"]
    assert entry["validation_damaged"]["a"] == {"flagged": 0.01, "wrong_unflagged": 0.01}
    assert entry["validation_clean_flagged"] == 0.01 and entry["validation_clean_wrong_unflagged"] == 0.0
    # Budget 0: both wrong answers of a must be flagged, so 0.86.
    assert review.choose_review_threshold({"a": a, "b": b}, clean, budget=0.0)["threshold"] == 0.86
    # A row flagged not a digit is not wrong and unflagged: with a's 0.85 flagged, 0.71 is enough again.
    a_flagged = outcome(a[0], a[1], [False] * 99 + [True])
    assert review.choose_review_threshold({"a": a_flagged, "b": b}, clean, budget=0.0)["threshold"] == 0.81


def test_no_threshold_meeting_the_budget_leaves_the_default_and_says_so():
    hopeless = outcome([0.999] * 10, [False] * 10)  # confidently wrong: no threshold up to 0.95 flags them
    entry = review.choose_review_threshold({"noise": hopeless}, hopeless)
    assert entry["threshold"] == review.DEFAULT_REVIEW_THRESHOLD == 0.9 and entry["met"] is False
    assert entry["validation_damaged"]["noise"]["wrong_unflagged"] == 1.0


@pytest.mark.parametrize("value", [None, 0.0, 0.5, 1, 1.0])
def test_check_review_threshold_takes_none_and_numbers_in_range(value):
    assert review.check_review_threshold(value) == value


@pytest.mark.parametrize("value", [-0.1, 1.01, float("nan"), "0.5", True])
def test_check_review_threshold_refuses_the_rest_naming_it(value):
    with pytest.raises(ValueError, match="review_threshold must be a number in"):
        review.check_review_threshold(value)


def test_the_run_takes_the_flag_then_the_card_then_the_default():
    assert review.review_threshold_for(0.81, 0.5) == (0.5, "--review-threshold")
    assert review.review_threshold_for(0.81, None) == (0.81, "model card")
    assert review.review_threshold_for(None, None) == (0.9, "default: the model card has none")


@pytest.mark.parametrize(
    "entry, message", [("0.8", "review must be an object"), ({"threshold": 7}, "review.threshold"), ({}, "review")]
)
def test_a_damaged_review_entry_is_refused_when_the_card_is_read(tmp_path, entry, message):
    data = json.loads(card_for(tmp_path / "m.keras", 0.8).to_json())
    data["review"] = entry
    (tmp_path / "m.card.json").write_text(json.dumps(data))
    with pytest.raises(ModelCardError, match=message) as info:
        parse_card((tmp_path / "m.card.json").read_text(), where="m.card.json")
    assert "m.card.json" in str(info.value)


def card_for(path, threshold: float | None) -> ModelCard:
    return ModelCard(
        model_name="reviewed",
        model_id=file_sha256(path) if path.exists() else "0" * 64,
        class_names=MNIST_CLASS_NAMES,
        input_shape=MODEL_INPUT_SHAPE,
        preprocess_version=PREPROCESS_VERSION,
        dataset="sample",
        not_digit={"output_index": 10, "threshold": 0.5},
        review=None if threshold is None else {"threshold": threshold, "met": True},
    )


# --- a model whose card records a review threshold, through score / predict / evaluate / the API ---------


@pytest.fixture(scope="module")
def reviewed_model(tmp_path_factory):
    """An 11-output model (untrained: the flag only has to follow the confidence); card threshold 0.2."""
    path = scoring_fixtures.save_untrained_checked_model(tmp_path_factory.mktemp("reviewed") / "reviewed.keras", 7)
    write_card(card_for(path, 0.2), path)
    return path


@pytest.fixture(scope="module")
def digit_files(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("rv_imgs")
    test = sample_data.split("test")
    for i in range(40):
        (root / str(int(test.labels[i]))).mkdir(exist_ok=True)
        Image.fromarray(test.images[i]).save(root / str(int(test.labels[i])) / f"{i}.png")
    return root


@pytest.mark.parametrize("engine", ["inprocess", "beam"])
def test_score_flags_below_the_cards_threshold_unless_the_flag_overrides_it(
    reviewed_model, digit_files, tmp_path, capsys, engine
):
    def run(out, *extra):
        args = ["score", "--model", str(reviewed_model), "--input", str(digit_files), "--output", str(out)]
        assert cli_main([*args, "--engine", engine, *extra]) == 0
        table = pq.read_table(out / "predictions").to_pydict()
        return table, json.loads((out / "summary.json").read_text())

    table, summary = run(tmp_path / "card")
    confidence = np.asarray(table["confidence"])
    assert 0 < (confidence < 0.2).sum() < len(confidence)  # the untrained model is unsure of some
    assert table["low_confidence"] == [bool(c < 0.2) for c in confidence]
    assert summary["review_threshold"] == 0.2 and summary["review_threshold_source"] == "model card"
    assert summary["counts"]["low_confidence"] == int((confidence < 0.2).sum())
    assert "review: low_confidence below 0.2 (model card)" in capsys.readouterr().out

    table, summary = run(tmp_path / "flag", "--review-threshold", "0.15")
    assert table["low_confidence"] == [bool(c < 0.15) for c in table["confidence"]]
    assert summary["review_threshold"] == 0.15 and summary["review_threshold_source"] == "--review-threshold"


def test_a_card_without_a_review_threshold_scores_at_0_9_and_says_so(tiny_litert_model, digit_files, tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        cli_main(["score", "--model", str(tiny_litert_model), "--input", str(digit_files), "--output", str(out)]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["review_threshold"] == 0.9 and summary["review_threshold_source"].startswith("default")
    table = pq.read_table(out / "predictions").to_pydict()
    assert table["low_confidence"] == [bool(c < 0.9) for c in table["confidence"]]
    assert "review: low_confidence below 0.9 (default: the model card has none)" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_a_review_threshold_out_of_range_is_exit_2_naming_the_flag(
    reviewed_model, digit_files, tmp_path, capsys, value
):
    base = ["--model", str(reviewed_model), "--review-threshold", value]
    assert cli_main(["score", *base, "--input", str(digit_files), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "review" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert cli_main(["predict", str(next(digit_files.glob("*/*.png"))), *base]) == 2
    assert "--review-threshold" in capsys.readouterr().err
    assert cli_main(["evaluate", *base, "--output", str(tmp_path / "e")]) == 2
    assert "--review-threshold" in capsys.readouterr().err


def test_a_card_with_a_damaged_review_threshold_is_refused_before_scoring(
    reviewed_model, digit_files, tmp_path, capsys
):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(reviewed_model.read_bytes())
    card = json.loads(reviewed_model.with_name("reviewed.card.json").read_text())
    card["review"]["threshold"] = "high"
    (tmp_path / "broken.card.json").write_text(json.dumps(card))
    assert (
        cli_main(["score", "--model", str(broken), "--input", str(digit_files), "--output", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "broken.card.json" in err and "review.threshold" in err
    assert not (tmp_path / "o" / "predictions").exists()


def test_predict_and_the_api_flag_below_the_cards_threshold(reviewed_model, digit_files, capsys):
    from mnist_batch import api

    files = sorted(str(p) for p in digit_files.glob("*/*.png"))[:10]
    assert cli_main(["predict", *files, "--model", str(reviewed_model)]) == 0
    rows = api.load_predictor(reviewed_model).predict(files)
    low = [r["low_confidence"] for r in rows]
    assert low == [r["confidence"] < 0.2 for r in rows] and any(low)
    assert capsys.readouterr().out.count("low confidence: below 0.2, for review") == sum(low)
    assert api.load_predictor(reviewed_model, review_threshold=0.0).review_threshold == 0.0
    with pytest.raises(ValueError, match="review_threshold"):
        api.load_predictor(reviewed_model, review_threshold=2)


def test_evaluate_flags_with_the_cards_threshold(reviewed_model, tmp_path):
    from mnist_batch.evaluation import evaluate

    summary = evaluate([str(reviewed_model)], "sample", "test", tmp_path / "e")
    assert summary["models"][0]["review_threshold"] == 0.2
    table = pq.read_table(tmp_path / "e" / "predictions.parquet", columns=["confidence", "low_confidence"]).to_pydict()
    assert table["low_confidence"] == [c < 0.2 for c in table["confidence"]]
    again = evaluate([str(reviewed_model)], "sample", "test", tmp_path / "f", review_threshold=0.9)
    assert again["models"][0]["review_threshold"] == 0.9


def test_export_chooses_the_threshold_and_the_monitor_reads_its_rate(sample_data, tmp_path):
    import keras

    from mnist_batch.monitoring.reference import from_card
    from mnist_batch.training.export import export_model

    keras.utils.set_random_seed(3)
    inputs = keras.Input(MODEL_INPUT_SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(11, activation="softmax")(keras.layers.Flatten()(inputs)))
    test, validation = sample_data.split("test"), sample_data.split("validation")
    path, card = export_model(
        model, tmp_path / "m.keras", model_name="m", dataset="sample", class_names=MNIST_CLASS_NAMES,
        split_sizes={}, test_split=test, epochs=1, strategy="", replicas=1, wall_time_s=1.0,
        validation_split=validation, seed=1,
    )  # fmt: skip
    entry = parse_card(path.with_name("m.card.json").read_text(), where="m.card.json").review
    assert entry == card.review and set(entry["validation_damaged"]) == set(synthetic.CORRUPTIONS)
    assert entry["validation_digits"] == len(validation.labels) and entry["budget"] == review.DAMAGED_WRONG_BUDGET
    worst = max(s["wrong_unflagged"] for s in entry["validation_damaged"].values())
    assert entry["met"] == (worst <= entry["budget"])  # untrained: most likely not met, 0.9 kept
    t = entry["threshold"]
    assert f"low_confidence_rate_at_{t}" in card.reference and "low_confidence_rate_at_0.9" in card.reference
    reference = from_card(card, t)
    assert reference.low_confidence_rate == pytest.approx(card.reference[f"low_confidence_rate_at_{t}"])


def test_the_report_marks_the_runs_review_threshold_on_the_risk_coverage_curve(reviewed_model, digit_files, tmp_path):
    from mnist_batch import trust
    from mnist_batch.report.inputs import read_output

    confidence, correct = np.array([0.1, 0.5, 0.81, 0.9, 0.99]), np.array([False, False, True, False, True])
    curve = trust.risk_coverage(confidence, correct, also=(0.81,))
    i = curve["threshold"].index(0.81)
    assert curve["threshold"] == sorted(curve["threshold"]) and curve["coverage"][i] == 0.6
    assert curve["risk"][i] == pytest.approx(1 / 3)  # of 0.81, 0.9, 0.99 kept, 0.9 is wrong
    out = tmp_path / "o"
    assert cli_main(["score", "--model", str(reviewed_model), "--input", str(digit_files), "--output", str(out)]) == 0
    assert read_output(out)[2][0].review_threshold == 0.2
    assert cli_main(["report", str(out)]) == 0
    assert (out / "risk_coverage.png").stat().st_size > 0 and "low confidence (&lt; 0.2" in (
        out / "report.html"
    ).read_text()
