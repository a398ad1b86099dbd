"""train(): injected data and strategy, run dir, export + model card, NaN loss, unwritable export."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from mnist_batch import metrics  # noqa: E402
from mnist_batch.config import TrainConfig  # noqa: E402
from mnist_batch.constants import PREPROCESS_VERSION  # noqa: E402
from mnist_batch.data.base import Dataset, Split  # noqa: E402
from mnist_batch.errors import DataError, MnistBatchError  # noqa: E402
from mnist_batch.model_card import file_sha256, read_card  # noqa: E402
from mnist_batch.preprocess import normalize  # noqa: E402
from mnist_batch.report.plots import read_history_csv  # noqa: E402
from mnist_batch.training.callbacks import TrainingError  # noqa: E402
from mnist_batch.training.export import ExportError  # noqa: E402
from mnist_batch.training.train import prepare_splits, train  # noqa: E402


@pytest.fixture(scope="module")
def small(sample):
    """A small, class-balanced slice of the real sample (fast but learnable)."""

    def take(split, n):
        index = np.linspace(0, len(split) - 1, n).round().astype(int)
        return Split(split.images[index], split.labels[index])

    splits = {"train": take(sample.splits["train"], 600), "validation": take(sample.splits["validation"], 200)}
    splits["test"] = take(sample.splits["test"], 300)
    return Dataset(name="sample-slice", splits=splits, class_names=sample.class_names)


def config(tmp_path, **kw):
    base = {"model": "mlp-512", "epochs": 2, "batch_size": 64, "verbose": 0, "seed": 1}
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_train_with_run_dir_and_export_writes_everything(small, tmp_path):
    export = tmp_path / "models" / "mlp.keras"
    result = train(config(tmp_path, run_dir=str(tmp_path / "run"), export=str(export)), datasets=small)
    assert result.epochs_run == 2 and result.initial_epoch == 0 and result.is_chief
    assert result.strategy == "DefaultStrategy" and result.replicas == 1
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.history["val_accuracy"][-1] > 0.5  # it learned something on real digits

    run = tmp_path / "run"
    assert (run / "checkpoints" / "best.keras").is_file()
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = read_history_csv(run / "history.csv")
    assert [int(e) for e in history["epoch"]] == [1, 2]  # counted from 1, as the console counts
    assert {"epoch_time_s", "learning_rate", "val_accuracy"} <= set(history)
    assert not (run / "backup").exists(), "a completed run removes its backup"
    best = keras.models.load_model(run / "checkpoints" / "best.keras", safe_mode=True)
    assert best.output_shape == (None, 11)  # ten digits and "not a digit" (the default --not-digit 0.05)

    card = read_card(export)  # verifies model_id == sha256 of the file
    assert card.model_id == file_sha256(export)
    assert card.model_name == "mlp-512" and card.dataset == "sample-slice"
    assert card.split_sizes == {"train": 600, "validation": 200, "test": 300}
    assert card.class_names == small.class_names and card.input_shape == (28, 28, 1)
    assert card.preprocess_version == PREPROCESS_VERSION
    assert card.epochs == 2 and card.strategy == "DefaultStrategy" and card.replicas == 1
    assert card.tf_version == tf.__version__ and card.keras_version == keras.__version__
    assert card.wall_time_s > 0 and card.extra["config"]["model"] == "mlp-512"

    # The card's test metrics are those of the exported file's ten digit outputs on the held-out test split.
    model = keras.models.load_model(export, safe_mode=True)
    test = small.splits["test"]
    pred = np.asarray(model(normalize(test.images)))[:, :10].argmax(1)
    cm = metrics.confusion_matrix(test.labels, pred, 10)
    assert card.test_metrics["accuracy"] == pytest.approx(metrics.accuracy(cm))

    # The fast runtime's file is made at export, beside the model, measured on the same test split.
    fast = card.runtimes["litert"]
    assert fast["sha256"] == file_sha256(export.with_suffix(".tflite"))
    assert fast["agreement"]["examples"] == 300 and fast["agreement"]["split"] == "test"
    assert fast["agreement"]["keras_accuracy"] == pytest.approx(card.test_metrics["accuracy"])
    assert card.test_metrics["macro_f1"] == pytest.approx(metrics.macro_f1(cm))
    assert card.test_metrics["examples"] == 300 and np.isfinite(card.test_metrics["loss"])
    # The not-digit threshold, chosen on the validation digits and generated negatives, and in the card.
    assert card.not_digit["output_index"] == 10 and 0 < card.not_digit["threshold"] <= 0.5
    assert card.not_digit["validation_digits"] == 200 and card.not_digit["validation_negatives"] > 0
    assert card.extra["not_digit_train_negatives"] == 30  # 5 % of 600
    assert fast["agreement"]["not_digit_agreement"] is not None
    assert not model.compiled, "the export is an inference-only copy"
    assert oct(export.stat().st_mode & 0o777) != "0o600"


@pytest.mark.slow
def test_tensorboard_and_file_cache(small, tmp_path):
    run = tmp_path / "run"
    cache = tmp_path / "cache"
    cfg = config(tmp_path, epochs=1, run_dir=str(run), tensorboard=True, cache_dir=str(cache))
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(MnistBatchError, match="needs the tensorboard package"):
            train(cfg, datasets=small)
        cfg = dataclasses.replace(cfg, tensorboard=False)
        train(cfg, datasets=small)
    else:
        train(cfg, datasets=small)
        assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    names = {p.name.split("-")[0] for p in cache.iterdir()}
    assert {"train", "validation"} <= names


@pytest.mark.slow
def test_seed_makes_runs_repeatable(small, tmp_path):
    a = train(config(tmp_path, epochs=1), datasets=small)
    b = train(config(tmp_path, epochs=1), datasets=small)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


@pytest.mark.slow
def test_injected_mirrored_strategy_uses_global_batch(small, tmp_path):
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    result = train(config(tmp_path, epochs=1, strategy="mirrored", allow_cpu=True), datasets=small, strategy=strategy)
    assert result.strategy == "MirroredStrategy" and result.epochs_run == 1


@pytest.mark.slow
def test_early_stopping_restores_best(small, tmp_path):
    # A learning rate this high makes validation accuracy fall after the first epoch.
    result = train(config(tmp_path, epochs=6, patience=1, model="cnn-keras", limit=200), datasets=small)
    assert result.epochs_run <= 6
    assert len(result.history["loss"]) == result.epochs_run


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(small, tmp_path):
    run = tmp_path / "run"
    train(config(tmp_path, epochs=1, run_dir=str(run)), datasets=small)
    best = run / "checkpoints" / "best.keras"
    good = best.read_bytes()
    # A learning rate this absurd overflows the weights within a couple of steps.
    cfg = config(tmp_path, epochs=3, learning_rate=1e30, augment=False, run_dir=str(run))
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1, batch \d+.*kept best checkpoint"):
        train(cfg, datasets=small)
    assert best.read_bytes() == good, "the last good checkpoint was overwritten"
    weights = keras.models.load_model(best, safe_mode=True).get_weights()
    assert all(np.isfinite(w).all() for w in weights)


def test_unwritable_export_path_fails_before_training(small, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(ExportError, match="not writable"):
        train(config(tmp_path, export=str(blocker / "m.keras")), datasets=small)
    assert issubclass(ExportError, MnistBatchError)


def test_unwritable_run_dir(small, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MnistBatchError, match="run dir .* not writable"):
        train(config(tmp_path, run_dir=str(blocker / "run")), datasets=small)


def test_prepare_splits_refuses_missing_or_empty_splits(small):
    empty = Split(np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8))
    with pytest.raises(DataError, match=r"\[train\]: split is empty"):
        prepare_splits(Dataset("x", {"train": empty, "validation": small.splits["validation"]}, small.class_names))
    with pytest.raises(DataError, match="no 'validation' split"):
        prepare_splits(Dataset("x", {"train": small.splits["train"]}, small.class_names))
    limited = prepare_splits(small, limit=50)
    assert {k: len(v) for k, v in limited.items()} == {"train": 50, "validation": 50, "test": 50}
    assert len(set(limited["train"].labels.tolist())) == 10  # the limit keeps every class


def test_train_config_validation_names_the_field():
    for kwargs, field in [
        ({"batch_size": -3}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"strategy": "tpu"}, "strategy"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"export": "model.h5"}, "export"),
        ({"limit": 0}, "limit"),
        ({"tensorboard": True}, "tensorboard"),
    ]:
        with pytest.raises(ValueError, match=f"^{field} "):
            TrainConfig(**kwargs)


@pytest.mark.slow
def test_card_json_is_plain_json(small, tmp_path):
    export = tmp_path / "m.keras"
    train(config(tmp_path, epochs=1, export=str(export)), datasets=small)
    data = json.loads((tmp_path / "m.card.json").read_text())
    assert data["model_id"] == file_sha256(export)
    assert set(data["test_metrics"]) == {"accuracy", "loss", "macro_f1", "examples"}


@pytest.mark.slow
def test_bfloat16_training_on_cpu_exports_a_float32_model(small, tmp_path, monkeypatch):
    """--mixed-precision on a CPU with bfloat16 instructions trains in mixed_bfloat16 and exports float32."""
    import keras

    from mnist_batch.training import strategy as strat

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("CPU-only expectation")
    # Force the bf16 branch (TF runs bfloat16 on any x86 CPU, emulated where the instructions lack).
    monkeypatch.setattr(strat, "cpu_supports_bf16", lambda cpuinfo="/proc/cpuinfo": True)
    export = tmp_path / "bf16.keras"
    try:
        result = train(
            config(tmp_path, model="cnn-keras", epochs=1, mixed_precision=True, export=str(export)), datasets=small
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.precision == "mixed_bfloat16"
    trained_policies = {layer.dtype_policy.name for layer in result.model.layers}
    assert "mixed_bfloat16" in trained_policies
    saved = keras.models.load_model(export, safe_mode=True, compile=False)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    card = read_card(export)
    assert card.extra["precision"] == "mixed_bfloat16" and card.extra["config"]["mixed_precision"] is True
    x = normalize(small.split("test").images[:64])
    bf16 = np.asarray(result.model(x, training=False), np.float32)
    f32 = np.asarray(saved(x, training=False), np.float32)
    assert f32.dtype == np.float32 and np.allclose(f32.sum(axis=1), 1.0, atol=1e-5)
    # Same weights, float32 math: the same predictions up to bfloat16 rounding.
    assert np.mean(bf16.argmax(1) == f32.argmax(1)) >= 0.95
    assert np.abs(bf16 - f32).max() < 0.1


def test_cpu_supports_bf16_reads_the_cpu_flags(tmp_path):
    from mnist_batch.training.strategy import cpu_supports_bf16

    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor : 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n", encoding="utf-8")
    without = tmp_path / "b"
    without.write_text("processor : 0\nflags\t\t: fpu sse2 avx2\n", encoding="utf-8")
    amx = tmp_path / "c"
    amx.write_text("flags : fpu amx_bf16 amx_tile\n", encoding="utf-8")
    assert cpu_supports_bf16(str(with_bf16)) and cpu_supports_bf16(str(amx))
    assert not cpu_supports_bf16(str(without)) and not cpu_supports_bf16(str(tmp_path / "missing"))
