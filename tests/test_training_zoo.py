"""Every zoo builder: output shape, one training step on a tiny batch, safe-mode save/load."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mnist_batch.training import zoo  # noqa: E402
from mnist_batch.training.zoo import DEFAULT_MODEL, MODEL_NAMES, build_model  # noqa: E402

SEED_NAMES = ("mlp-sigmoid-15", "mlp-512", "mlp-300-100", "mlp-deep-20", "mlp-1000x2-dropout", "cnn-keras", "cnn")


def test_zoo_has_every_seed_network_and_cnn_is_default():
    assert set(MODEL_NAMES) == set(SEED_NAMES)
    assert DEFAULT_MODEL == "cnn"
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("resnet-9000")


def test_registry_maps_every_name_to_its_builder_and_lists_names_for_an_unknown_one():
    assert zoo.model_names() == MODEL_NAMES == tuple(zoo.MODELS) == SEED_NAMES  # definition order
    for name in SEED_NAMES:
        assert zoo.get_model_builder(name) is zoo.MODELS[name]
    assert zoo.get_model_builder("cnn") is zoo.cnn
    with pytest.raises(ValueError) as info:
        zoo.get_model_builder("resnet-9000")
    assert all(name in str(info.value) for name in SEED_NAMES) and "'resnet-9000'" in str(info.value)
    with pytest.raises(TypeError):
        zoo.MODELS["x"] = zoo.cnn  # read-only: register() is the one way in


def test_register_adds_a_builder_once(monkeypatch):
    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))

    @zoo.register("tiny")
    def tiny(num_classes=10, *, total_steps=1000, learning_rate=None):
        return zoo.mlp_512(num_classes, total_steps=total_steps, learning_rate=learning_rate)

    assert zoo.get_model_builder("tiny") is tiny and zoo.model_names()[-1] == "tiny"
    assert build_model("tiny")[0].output_shape == (None, 10)
    with pytest.raises(ValueError, match="'cnn' is already registered"):
        zoo.register("cnn")(tiny)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "cnn" else n for n in SEED_NAMES])
def test_builder_trains_one_step_and_round_trips_in_safe_mode(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, optimizer = build_model(name, num_classes=10, total_steps=10)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    assert not model.compiled, "builders return uncompiled models"
    rng = np.random.default_rng(0)
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (8, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)), "one step changed nothing"

    path = tmp_path / f"{name}.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    assert "Lambda" not in json.dumps(config)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)


def test_mixed_precision_keeps_the_softmax_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, _ = build_model("cnn", total_steps=10)
        assert model.get_layer("block1a_conv").compute_dtype == "float16"
        assert model.get_layer("probabilities").compute_dtype == "float32"
        out = model(np.zeros((2, 28, 28, 1), np.float32))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_multi_replica_builds_synchronised_batch_norm():
    model, _ = build_model("cnn", total_steps=10, replicas=2)
    assert model.get_layer("block1a_bn").synchronized
    model, _ = build_model("cnn", total_steps=10)
    assert not model.get_layer("block1a_bn").synchronized
    build_model("mlp-512", replicas=2)  # models without batch norm ignore it


def test_cnn_keeps_a_weight_average_only_for_long_runs():
    from mnist_batch.training.zoo import EMA_MIN_STEPS

    assert build_model("cnn", total_steps=EMA_MIN_STEPS)[1].use_ema
    assert not build_model("cnn", total_steps=EMA_MIN_STEPS - 1)[1].use_ema


def test_learning_rate_override():
    _, optimizer = build_model("mlp-512", learning_rate=0.123)
    assert float(optimizer.learning_rate) == pytest.approx(0.123)
