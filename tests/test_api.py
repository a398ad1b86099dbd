"""The public API (mnist_batch.api): load_predictor, ScoreDigits in a user's pipeline, score()."""

from __future__ import annotations

import io
import json
import pathlib
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import test_not_digit
from PIL import Image

from mnist_batch import api
from mnist_batch.errors import MnistBatchError
from mnist_batch.models import ModelError
from mnist_batch.tables import ERRORS_SCHEMA, PREDICTIONS_SCHEMA

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_litert_model
checked_model = test_not_digit.checked_model  # an 11-output model with a not-digit threshold on its card
sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def digits(sample_data):
    test = sample_data.split("test")
    return test.images[:6], test.labels[:6]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_predictor_gives_each_input_kind_the_row_scoring_gives(tiny_model, digits, tmp_path):
    images, _ = digits
    path = tmp_path / "seven.png"
    path.write_bytes(png(images[0]))
    scan = scoring_fixtures.scan_like(images[1], np.random.default_rng(0))
    predictor = api.load_predictor(tiny_model)
    assert predictor.runtime == "litert" and predictor.model_id != predictor.runtime_model_id
    inputs = [str(path), pathlib.Path(path), png(images[0]), Image.fromarray(images[0]), images[0], 255 - scan]
    rows = predictor.predict(inputs)
    assert len(rows) == len(inputs) and all(set(r) == set(PREDICTIONS_SCHEMA.names) for r in rows)
    assert [r["path"] for r in rows] == [str(path), str(path), None, None, None, None]
    first = rows[0]
    for other in rows[1:5]:  # the same digit, however it was handed over: the same answer
        assert other["probabilities"] == pytest.approx(first["probabilities"], abs=1e-6)
    assert first["model_id"] == predictor.model_id and first["runtime_model_id"] == predictor.runtime_model_id
    assert abs(sum(first["probabilities"])) == pytest.approx(1.0, abs=1e-4)
    assert first["low_confidence"] == (first["confidence"] < 0.9) and first["run_id"] == "api"
    # a float image in [0, 1] and an RGB array are accepted too
    as_float = predictor.predict([images[0].astype(np.float32) / 255.0, np.stack([images[0]] * 3, axis=-1)])
    for row in as_float:
        assert row["predicted_label"] == first["predicted_label"]


def test_a_bad_input_raises_naming_it_or_becomes_an_error_row(tiny_model, digits, tmp_path):
    images, _ = digits
    predictor = api.load_predictor(tiny_model)
    inputs = [images[0], b"not an image", str(tmp_path / "missing.png"), np.zeros((2, 2, 2, 2), np.uint8)]
    with pytest.raises(api.ImageError, match=r"image 1 \(bytes\)"):
        predictor.predict(inputs)
    rows = predictor.predict(inputs, on_error="row")
    assert set(rows[0]) == set(PREDICTIONS_SCHEMA.names)
    assert [set(r) == set(ERRORS_SCHEMA.names) for r in rows[1:]] == [True, True, True]
    assert [r["stage"] for r in rows[1:]] == ["decode", "read", "preprocess"]
    assert rows[2]["path"] == str(tmp_path / "missing.png") and rows[2]["message"] == "no such file"
    with pytest.raises(ValueError, match="on_error"):
        predictor.predict([], on_error="skip")


def test_load_predictor_refuses_a_model_that_does_not_match_its_card(tiny_model, tmp_path):
    copy = tmp_path / "m.keras"
    copy.write_bytes(tiny_model.read_bytes() + b"x")
    (tmp_path / "m.card.json").write_text(tiny_model.with_suffix(".card.json").read_text())
    with pytest.raises(ModelError, match="sha256"):
        api.load_predictor(copy)


def test_score_digits_in_a_users_pipeline(tiny_model, digits, tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    images, _ = digits
    paths = []
    for i, image in enumerate(images[:3]):
        paths.append(str(tmp_path / f"{i}.png"))
        pathlib.Path(paths[-1]).write_bytes(png(image))
    paths.append(str(tmp_path / "broken.png"))
    pathlib.Path(paths[-1]).write_bytes(b"broken")
    expected = {r["path"]: r["predicted_label"] for r in api.load_predictor(tiny_model).predict(paths[:3])}
    with TestPipeline() as p:
        out = p | beam.Create(paths) | "Score" >> api.ScoreDigits(str(tiny_model), run_id="mine")
        labels = out["predictions"] | beam.Map(lambda r: (r["path"], r["predicted_label"], r["run_id"]))
        assert_that(labels, equal_to([(k, v, "mine") for k, v in expected.items()]), label="Predictions")
        errors = out["errors"] | beam.Map(lambda r: (r["path"], r["stage"], sorted(r)))
        assert_that(errors, equal_to([(paths[-1], "decode", sorted(ERRORS_SCHEMA.names))]), label="Errors")
    with TestPipeline() as p:  # (key, bytes) pairs, as from a queue or a database
        keyed = p | beam.Create([("a", png(images[0])), ("b", b"")])
        out = keyed | "Score" >> api.ScoreDigits(str(tiny_model))
        rows = out["predictions"] | beam.Map(lambda r: (r["path"], sorted(r) == sorted(PREDICTIONS_SCHEMA.names)))
        assert_that(rows, equal_to([("a", True)]), label="Rows")
        assert_that(out["errors"] | beam.Map(lambda r: r["path"]), equal_to(["b"]), label="Dead")


@pytest.mark.slow
def test_score_runs_the_clis_job_and_refuses_what_the_cli_refuses(tiny_model, sample_data, tmp_path):
    scoring_fixtures.write_train_digits(sample_data, tmp_path / "in", 8)
    summary = api.score(tmp_path / "in", str(tmp_path / "out"), model=tiny_model)
    assert summary["counts"]["scored"] == 8 and summary["exit_code"] == 0
    assert summary["engine"] == "inprocess"  # the CLI's choice for a local flat run
    on_beam = api.score(tmp_path / "in", str(tmp_path / "out_beam"), model=tiny_model, engine="beam")
    assert on_beam["engine"] == "beam" and on_beam["counts"] == summary["counts"]
    with pytest.raises(MnistBatchError, match="--engine inprocess cannot run this launch: --layout runs"):
        api.score(tmp_path / "in", str(tmp_path / "r"), model=tiny_model, layout="runs", engine="inprocess")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run_id"] == summary["run_id"]
    assert pq.read_table(tmp_path / "out" / "predictions").num_rows == 8
    runs = api.score([str(tmp_path / "in")], str(tmp_path / "root"), model=str(tiny_model), layout="runs",
                     incremental=True, run_id="n1")  # fmt: skip
    assert runs["run_id"] == "n1" and runs["incremental"]["enabled"] is True
    with pytest.raises(MnistBatchError, match="unknown option 'ouput'"):
        api.score(str(tmp_path / "in"), str(tmp_path / "x"), model=str(tiny_model), ouput="y")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MnistBatchError, match="matches no files"):
        api.score(str(tmp_path / "empty"), str(tmp_path / "none"), model=str(tiny_model))
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "broken" / name).write_bytes(b"not a png")
    with pytest.raises(api.RunFailedError, match=r"exit 4") as failed:
        api.score(str(tmp_path / "broken"), str(tmp_path / "dead"), model=str(tiny_model))
    assert failed.value.summary["counts"]["errors"] == 2 and failed.value.summary["exit_code"] == 4


@pytest.mark.slow
def test_the_api_imports_no_beam_until_score_digits_is_used():
    import subprocess

    code = "import sys; from mnist_batch import api; assert 'apache_beam' not in sys.modules; api.ScoreDigits"
    code += "; assert 'apache_beam' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


@pytest.mark.slow
def test_the_api_is_quiet_by_default(tiny_model, sample_data, tmp_path):
    """A script that scores through the API prints only what it prints: no Beam, TensorFlow or LiteRT line."""
    import subprocess

    scoring_fixtures.write_train_digits(sample_data, tmp_path / "in", 4)
    script = (
        "from mnist_batch import api\n"
        f"rows = api.load_predictor({str(tiny_model)!r}).predict([{str(next((tmp_path / 'in').rglob('*.png')))!r}])\n"
        f"summary = api.score({str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}, model={str(tiny_model)!r})\n"
        "print(len(rows), summary['counts']['scored'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1 4\n" and done.stderr == "", done.stderr


def test_a_model_with_the_not_digit_check_flags_as_score_does(checked_model, digits, tmp_path):
    """A card with a not-digit threshold: each row says whether the image is a digit, from its score."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    images, _ = digits
    predictor = api.load_predictor(checked_model, runtime="keras")
    assert predictor.not_digit_threshold == pytest.approx(0.09)
    rows = predictor.predict(list(images))
    assert all(r["not_digit"] == (r["not_digit_score"] >= 0.09) for r in rows)
    assert all(r["not_digit_score"] is not None for r in rows)
    stricter = api.load_predictor(checked_model, runtime="keras", not_digit_threshold=1.0).predict(list(images))
    assert not any(r["not_digit"] for r in stricter)
    expected = [(f"k{i}", r["not_digit"]) for i, r in enumerate(rows)]
    with TestPipeline() as p:
        keyed = p | beam.Create([(f"k{i}", png(image)) for i, image in enumerate(images)])
        out = keyed | api.ScoreDigits(str(checked_model), runtime="keras")
        assert_that(out["predictions"] | beam.Map(lambda r: (r["path"], r["not_digit"])), equal_to(expected))


def test_an_older_model_leaves_the_not_digit_columns_null(tiny_model, digits):
    (row,) = api.load_predictor(tiny_model).predict([digits[0][0]])
    assert row["not_digit"] is None and row["not_digit_score"] is None
