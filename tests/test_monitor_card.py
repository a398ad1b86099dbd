"""The model card's held-out ``reference`` (monitoring's default reference), written at export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_batch.metrics import CONFIDENCE_BINS
from mnist_batch.model_card import ModelCard, parse_card, read_card

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_model
sample_data = scoring_fixtures.sample_data


def test_cards_without_a_reference_stay_valid():
    old = {"model_name": "cnn", "model_id": "a" * 64, "class_names": list("0123456789")}
    old |= {"input_shape": [28, 28, 1], "preprocess_version": "1"}
    card = parse_card(json.dumps(old), where="old card")
    assert card.reference is None
    assert json.loads(card.to_json())["reference"] is None


@pytest.mark.slow
def test_export_writes_the_held_out_reference(tiny_model, sample_data, tmp_path):
    import keras

    from mnist_batch.monitoring.reference import from_card
    from mnist_batch.training.export import export_model

    test = sample_data.split("test")
    trained = keras.models.load_model(tiny_model, safe_mode=True, compile=False)
    x = inputs = keras.Input((28, 28, 1))
    for layer in trained.layers:  # export copies functional models, as the zoo builds them
        x = layer(x)
    model = keras.Model(inputs, x)
    path, card = export_model(
        model,
        tmp_path / "m.keras",
        model_name="tiny",
        dataset="sample",
        class_names=tuple(str(i) for i in range(10)),
        split_sizes={"test": len(test.labels)},
        test_split=test,
        epochs=2,
        strategy="",
        replicas=1,
        wall_time_s=1.0,
    )
    ref = read_card(path).reference
    assert ref == card.reference and ref["split"] == "test" and ref["examples"] == len(test.labels) == 2000
    assert sum(ref["predicted_class_counts"]) == sum(ref["confidence_histogram"]) == 2000
    assert len(ref["predicted_class_counts"]) == 10 and len(ref["confidence_histogram"]) == CONFIDENCE_BINS
    low = ref["low_confidence_rate_at_0.9"]
    assert 0 <= low < 0.6
    # The monitor's reference reads the same rate off the histogram (0.9 is a bin edge).
    reference = from_card(ModelCard.from_dict(json.loads(path.with_name("m.card.json").read_text())), 0.9)
    assert reference.kind == "card" and np.isclose(reference.low_confidence_rate, low)
    assert reference.accuracy == card.test_metrics["accuracy"] > 0.8
