"""Every hostile input of the issue lands in predictions or errors with a reason; none crashes the run.

The unreadable file: tests run as root here, and root reads mode-000 files, so
``scoring_fixtures.enforce_permissions`` patches the scorer's file opens (Beam's ``FileSystems.open``
and ``mnist_batch.files.open_local``, in this process, the DirectRunner's) to raise the PermissionError a normal
user gets; the file really is mode 000.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from mnist_batch.config import ScoreConfig

apache_beam = pytest.importorskip("apache_beam")

from mnist_batch.scoring.launch import run_scoring  # noqa: E402
from mnist_batch.scoring.summary import EXIT_TOO_MANY_ERRORS  # noqa: E402

import scoring_fixtures  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def bad_run(tiny_model, sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    digit = sample_data.split("test").images[3]
    expectations = scoring_fixtures.write_bad_inputs(root / "in", digit, np.random.default_rng(5))
    (root / "in" / "README.txt").write_text("not an image", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        scoring_fixtures.enforce_permissions(mp)
        summary = run_scoring(
            ScoreConfig(model=str(tiny_model), inputs=(str(root / "in"),), output=str(root / "out"), run_id="bad")
        )
    return root, expectations, summary


@pytest.mark.slow
def test_unreadable_file_really_is_mode_000(bad_run):
    root, _, _ = bad_run
    assert os.stat(root / "in" / "unreadable.png").st_mode & 0o777 == 0


def test_every_bad_input_lands_where_expected_with_a_reason(bad_run):
    root, expectations, summary = bad_run
    predictions = pq.read_table(root / "out" / "predictions").to_pydict()
    errors = pq.read_table(root / "out" / "errors").to_pydict()
    landed = {}
    for path, blank in zip(predictions["path"], predictions["blank"], strict=True):
        landed[os.path.relpath(path, root / "in")] = "blank" if blank else "prediction"
    reasons = {}
    for path, stage, error_type, message in zip(
        errors["path"], errors["stage"], errors["error_type"], errors["message"], strict=True
    ):
        rel = os.path.relpath(path, root / "in")
        assert rel not in landed, f"{rel} is both a prediction and an error"
        landed[rel] = f"error:{stage}"
        reasons[rel] = (error_type, message)
        assert error_type and message, rel
    assert landed == expectations
    assert "empty file" in reasons["zero_byte.png"][1]
    assert "pixel limit" in reasons["bomb_60000x60000.png"][1]
    assert reasons["unreadable.png"][0] == "PermissionError"
    assert summary["skipped_by_reason"] == {"not an image extension": 1}
    assert summary["exit_code"] == 0


def test_invariant_matched_is_predictions_plus_errors(bad_run):
    root, expectations, summary = bad_run
    counts = summary["counts"]
    n_predictions = pq.read_table(root / "out" / "predictions").num_rows
    n_errors = pq.read_table(root / "out" / "errors").num_rows
    assert counts["matched"] == len(expectations) == n_predictions + n_errors
    assert counts["scored"] == n_predictions and counts["errors"] == n_errors
    assert counts["blank"] == 2
    by_stage = {}
    for where in expectations.values():
        if where.startswith("error:"):
            by_stage[where[6:]] = by_stage.get(where[6:], 0) + 1
    assert summary["errors_by_stage"] == by_stage
    metrics = summary["metrics"]
    assert metrics["decode_errors"] == by_stage["decode"] and metrics["read_errors"] == by_stage["read"]
    assert metrics["images_decoded"] == n_predictions == metrics["scored"]


def test_good_variants_are_scored_as_the_digit(bad_run, tiny_model, sample_data):
    """The hostile-but-valid encodings of one digit all predict what the clean digit predicts."""
    from mnist_batch.models import load_keras_model
    from mnist_batch.preprocess import normalize

    root, _expectations, _ = bad_run
    digit = sample_data.split("test").images[3]
    expected = int(np.asarray(load_keras_model(tiny_model)(normalize(digit[None]), training=False)).argmax())
    table = pq.read_table(root / "out" / "predictions").to_pydict()
    predicted = {
        os.path.relpath(p, root / "in"): k for p, k in zip(table["path"], table["predicted_label"], strict=True)
    }
    for name in ("sixteen_bit.png", "cmyk.jpg", "palette_transparent.png", "ink_in_alpha.png", "animated.gif"):
        assert predicted[name] == expected, name
    for name in ("digit.webp", "digit.tiff", "mon chiffre é ü.png", "x.png/inside.png", "large_3000x2000.png"):
        assert predicted[name] == expected, name


@pytest.mark.slow
def test_max_error_rate_fails_the_run_but_writes_outputs(bad_run, tiny_model, tmp_path):
    root, _expectations, summary = bad_run
    rate = summary["counts"]["errors"] / summary["counts"]["matched"]
    config = ScoreConfig(
        model=str(tiny_model), inputs=(str(root / "in" / "*.png"),), output=str(tmp_path / "out"), max_error_rate=0.1
    )
    strict = run_scoring(config)
    assert strict["exit_code"] == EXIT_TOO_MANY_ERRORS and "over --max-error-rate" in strict["failure"]
    assert rate > 0.1
    assert (tmp_path / "out" / "predictions").is_dir() and (tmp_path / "out" / "errors").is_dir()
    saved = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert saved["exit_code"] == EXIT_TOO_MANY_ERRORS
    lenient = run_scoring(dataclasses.replace(config, max_error_rate=0.9, output=str(tmp_path / "out2")))
    assert lenient["exit_code"] == 0


@pytest.mark.slow
def test_every_file_failing_is_a_non_zero_exit(tiny_model, tmp_path, capsys):
    from mnist_batch.cli import main as cli_main

    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "in" / name).write_bytes(b"<html>not an image</html>")
    code = cli_main(
        ["score", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    )
    assert code == EXIT_TOO_MANY_ERRORS
    assert "every one of the 2 matched files failed" in capsys.readouterr().err
    assert pq.read_table(tmp_path / "out" / "errors").num_rows == 2
    assert pq.read_table(tmp_path / "out" / "predictions").num_rows == 0
