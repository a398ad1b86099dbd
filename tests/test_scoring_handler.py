"""The Keras 3 model handler, tested the way Beam tests its own handlers
(apache_beam/ml/inference/tensorflow_inference_test.py): run_inference on a loaded model,
PredictionResult contents, num bytes, namespace, batching kwargs, a custom inference_fn,
and RunInference in a TestPipeline with assert_that. Plus the model-vs-card check.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from mnist_batch.model_card import ModelCard, file_sha256, read_card, write_card
from mnist_batch.preprocess import normalize

import scoring_fixtures

apache_beam = pytest.importorskip("apache_beam")

from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from mnist_batch.models import ModelError, check_model, load_keras_model, to_probabilities  # noqa: E402
from mnist_batch.scoring.handler import DigitModelHandler  # noqa: E402

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def examples(sample_data):
    test = sample_data.split("test")
    return test.images[:40], test.labels[:40]


@pytest.mark.slow
def test_run_inference_returns_numpy_probabilities_equal_to_the_model(tiny_model, examples):
    images, _ = examples
    handler = DigitModelHandler(str(tiny_model))
    loaded = handler.load_model()
    results = list(handler.run_inference(list(images), loaded))
    assert len(results) == len(images)
    expected = np.asarray(load_keras_model(tiny_model)(normalize(images), training=False))
    for result, image, row in zip(results, images, expected, strict=True):
        assert isinstance(result, PredictionResult)
        np.testing.assert_array_equal(result.example, image)
        assert isinstance(result.inference, np.ndarray) and result.inference.dtype == np.float32
        np.testing.assert_allclose(result.inference, row, rtol=1e-5, atol=1e-6)
        assert abs(float(result.inference.sum()) - 1.0) < 1e-4


def test_handler_metadata(tiny_model, examples):
    images, _ = examples
    handler = DigitModelHandler(str(tiny_model), min_batch_size=8, max_batch_size=32)
    assert handler.get_num_bytes(list(images[:3])) == 3 * 28 * 28
    assert handler.get_metrics_namespace() == "mnist_batch_model"
    assert handler.batch_elements_kwargs() == {"min_batch_size": 8, "max_batch_size": 32}
    handler.validate_inference_args(None)
    with pytest.raises(ValueError, match="no inference_args"):
        handler.validate_inference_args({"x": 1})
    handler.update_model_path("other.keras")
    assert handler._model_uri == "other.keras"


def test_custom_inference_fn_is_used(tiny_model, examples):
    images, _ = examples
    calls = []

    def inference_fn(loaded, batch, inference_args=None):
        calls.append(len(batch))
        return [PredictionResult(x, np.zeros(10, np.float32)) for x in batch]

    handler = DigitModelHandler(str(tiny_model), inference_fn=inference_fn)
    results = list(handler.run_inference(list(images[:5]), handler.load_model()))
    assert calls == [5] and all(r.inference.sum() == 0 for r in results)


def test_logits_become_probabilities():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
    probs = to_probabilities(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert probs[0].argmax() == 0 and np.allclose(probs[1], 1 / 3)
    already = np.array([[0.2, 0.8]], np.float32)
    assert to_probabilities(already) is not None and np.array_equal(to_probabilities(already), already)


@pytest.mark.slow
def test_keyed_run_inference_in_a_test_pipeline(tiny_model, examples):
    images, labels = examples
    model = load_keras_model(tiny_model)
    expected_labels = np.asarray(model(normalize(images), training=False)).argmax(axis=1)
    keyed = [(f"img{i}", image) for i, image in enumerate(images)]
    with BeamTestPipeline() as p:
        predicted = (
            p
            | "CreateExamples" >> apache_beam.Create(keyed)
            | "RunInference" >> RunInference(KeyedModelHandler(DigitModelHandler(str(tiny_model), max_batch_size=16)))
            | "ArgMax" >> apache_beam.Map(lambda kv: (kv[0], int(np.argmax(kv[1].inference))))
        )
        assert_that(predicted, equal_to([(f"img{i}", int(label)) for i, label in enumerate(expected_labels)]))
    # The tiny model is a real digit model: it gets most of these right.
    assert (expected_labels == labels).mean() >= 0.85


# --- the model/card check, before any file is read -------------------------------------------


def copy_model(tiny_model, tmp_path, **card_changes):
    target = tmp_path / "copy.keras"
    shutil.copy(tiny_model, target)
    card = dataclasses.replace(read_card(tiny_model), **card_changes)
    write_card(card, target)
    return target


def test_check_model_accepts_the_tiny_model(tiny_model):
    card = check_model(str(tiny_model))
    assert card.num_classes == 10 and card.model_id == file_sha256(tiny_model)


def test_check_model_refuses_a_class_count_mismatch(tiny_model, tmp_path):
    path = copy_model(tiny_model, tmp_path, class_names=("a", "b", "c"))
    with pytest.raises(ModelError, match="outputs \\(10,\\) but the card names 3 classes"):
        check_model(str(path))


def test_check_model_refuses_an_input_shape_mismatch(tiny_model, tmp_path):
    path = copy_model(tiny_model, tmp_path, input_shape=(32, 32, 3))
    with pytest.raises(ModelError, match="card input_shape \\[32, 32, 3\\]"):
        check_model(str(path))


def test_check_model_refuses_a_replaced_model_file(tiny_model, tmp_path):
    path = copy_model(tiny_model, tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match the card's model_id"):
        check_model(str(path))


def test_check_model_refuses_an_unreadable_model(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"this is not a zip file")
    card = ModelCard(
        model_name="broken",
        model_id=file_sha256(path),
        class_names=tuple("0123456789"),
        input_shape=(28, 28, 1),
        preprocess_version="1",
    )
    write_card(card, path)
    with pytest.raises(ModelError, match="cannot load the Keras model"):
        check_model(str(path))


def test_check_model_refuses_a_missing_card(tiny_model, tmp_path):
    path = tmp_path / "nocard.keras"
    shutil.copy(tiny_model, path)
    with pytest.raises(ModelError, match="model card not found"):
        check_model(str(path))
