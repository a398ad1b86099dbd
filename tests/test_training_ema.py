"""The weight moving average (EMA) of ``cnn`` is what validation judges, checkpoints keep and exports hold.

The EMA is recomputed here independently from the raw weights after every step (as the
optimizer defines it: the first step's weights, then ``0.99 * ema + 0.01 * weights``), so
the tests rely on no optimizer internals.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mnist_batch.config import TrainConfig  # noqa: E402
from mnist_batch.data.base import Dataset, Split  # noqa: E402
from mnist_batch.preprocess import normalize  # noqa: E402
from mnist_batch.training import callbacks as cb  # noqa: E402
from mnist_batch.training import zoo  # noqa: E402
from mnist_batch.training.train import train  # noqa: E402

MOMENTUM = 0.99


class IndependentEma(keras.callbacks.Callback):
    """Tracks the EMA of the trainable weights from the outside; records raw and EMA per epoch."""

    def __init__(self, momentum: float = MOMENTUM):
        super().__init__()
        self.momentum = np.float32(momentum)
        self.ema: list[np.ndarray] | None = None
        self.raw_per_epoch: list[list[np.ndarray]] = []
        self.ema_per_epoch: list[list[np.ndarray]] = []

    def _weights(self):
        return [keras.ops.convert_to_numpy(v).astype(np.float32) for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        weights = self._weights()
        if self.ema is None:
            self.ema = weights
        else:
            self.ema = [
                self.momentum * e + (np.float32(1) - self.momentum) * w for e, w in zip(self.ema, weights, strict=True)
            ]

    def on_epoch_end(self, epoch, logs=None):
        self.raw_per_epoch.append(self._weights())
        self.ema_per_epoch.append([e.copy() for e in self.ema])


class Snapshot(keras.callbacks.Callback):
    """Copies the trainable weights at each epoch end (and at validation start)."""

    def __init__(self):
        super().__init__()
        self.epoch_end: list[list[np.ndarray]] = []
        self.test_begin: list[list[np.ndarray]] = []

    def _weights(self):
        return [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]

    def on_test_begin(self, logs=None):
        self.test_begin.append(self._weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_end.append(self._weights())


def assert_weights_close(actual, expected):
    assert len(actual) == len(expected) > 0
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6)


def assert_weights_differ(actual, expected):
    assert any(not np.allclose(a, e, rtol=1e-4, atol=1e-6) for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("loss_scale", [False, True], ids=["adamw", "loss-scale-optimizer"])
@pytest.mark.slow
def test_ema_weights_are_in_the_model_for_validation_and_the_epoch_end_window_only(loss_scale):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(6,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs)))
    optimizer = keras.optimizers.AdamW(learning_rate=0.05, use_ema=True, ema_momentum=MOMENTUM)
    if loss_scale:  # what compile() wraps it in under mixed_float16; its own use_ema is False
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, 64), 3)

    outside, ema = IndependentEma(), cb.EmaWeights()
    inside, after = Snapshot(), Snapshot()
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[outside, ema, inside, ema.restore, after],
    )
    for epoch in range(3):
        assert_weights_close(inside.test_begin[epoch], outside.ema_per_epoch[epoch])  # validation sees the EMA
        assert_weights_close(inside.epoch_end[epoch], outside.ema_per_epoch[epoch])  # so do the writers
        assert_weights_close(after.epoch_end[epoch], outside.raw_per_epoch[epoch])  # training goes on from raw
        assert_weights_differ(outside.ema_per_epoch[epoch], outside.raw_per_epoch[epoch])
    final = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert_weights_close(final, outside.ema_per_epoch[-1])  # the trained model holds the EMA


def test_without_ema_the_callbacks_change_nothing():
    model, optimizer = zoo.build_model("mlp-512", total_steps=10)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    assert cb.ema_optimizer(model.optimizer) is None
    ema = cb.EmaWeights()
    ema.set_model(model)
    before = model.get_weights()
    ema.on_test_begin()
    ema.on_epoch_end(0)
    ema.on_train_end()
    for a, b in zip(model.get_weights(), before, strict=True):
        assert np.array_equal(a, b)


def test_early_stopping_waits_until_the_average_has_forgotten_the_initial_weights():
    _, optimizer = zoo.build_model("cnn", total_steps=zoo.EMA_MIN_STEPS)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.99
    assert cb.ema_warmup_epochs(optimizer, 299) == 1 and cb.ema_warmup_epochs(optimizer, 298) == 2
    assert cb.ema_warmup_epochs(optimizer, 55) == 6  # the default run: 7,000 images, batch 128
    assert cb.ema_warmup_epochs(keras.optimizers.LossScaleOptimizer(optimizer), 55) == 6
    assert cb.ema_warmup_epochs(zoo.build_model("mlp-512")[1], 55) == 0
    assert cb.ema_warmup_epochs(zoo.build_model("cnn", total_steps=10)[1], 55) == 0  # short run: no EMA
    callbacks = cb.build_callbacks(
        None, epochs=15, verbose=0, patience=2, tensorboard=False, resuming=False, start_from_epoch=6
    )
    (early,) = [c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)]
    assert early.start_from_epoch == 6 and early.restore_best_weights


@pytest.fixture(scope="module")
def small(sample):
    def take(split, n):
        index = np.linspace(0, len(split) - 1, n).round().astype(int)
        return Split(split.images[index], split.labels[index])

    splits = {"train": take(sample.splits["train"], 640), "validation": take(sample.splits["validation"], 200)}
    splits["test"] = take(sample.splits["test"], 200)
    return Dataset(name="sample-slice", splits=splits, class_names=sample.class_names)


@pytest.mark.slow
def test_patience_with_cnn_exports_the_ema_weights_of_the_best_epoch(small, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "EMA_MIN_STEPS", 50)  # 6 epochs x 20 steps: the average is on
    monkeypatch.setattr(cb, "EMA_WARMUP_SHARE", 0.7)  # 36 steps: early stopping judges from epoch 3
    outside = IndependentEma()
    build = cb.build_callbacks
    monkeypatch.setattr(cb, "build_callbacks", lambda *a, **kw: [outside, *build(*a, **kw)])
    export = tmp_path / "cnn.keras"
    config = TrainConfig(
        model="cnn",
        epochs=6,
        batch_size=32,
        patience=2,
        verbose=0,
        seed=3,
        run_dir=str(tmp_path / "run"),
        export=str(export),
        not_digit=0.0,  # digits only: 20 steps an epoch as assumed above, and a model that learns in 6 epochs
    )
    result = train(config, datasets=small)
    assert cb.ema_optimizer(result.model.optimizer) is not None

    val_accuracy = result.history["val_accuracy"]
    warmup = 2
    best = warmup + int(np.argmax(val_accuracy[warmup:]))  # EarlyStopping keeps the first best judged epoch
    exported = keras.models.load_model(export, safe_mode=True)
    checkpoint = keras.models.load_model(tmp_path / "run" / "checkpoints" / "best.keras", safe_mode=True)
    for model in (exported, checkpoint):
        weights = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
        assert_weights_close(weights, outside.ema_per_epoch[best])
        assert_weights_differ(weights, outside.raw_per_epoch[best])

    # val_accuracy was measured on the EMA weights: the export scores the best epoch's value.
    val = small.splits["validation"]
    predicted = np.asarray(exported(normalize(val.images), training=False)).argmax(axis=1)
    ema_accuracy = float(np.mean(predicted == val.labels))
    assert ema_accuracy == pytest.approx(val_accuracy[best], abs=1.5 / len(val))  # batching may flip a tie
    raw_model = keras.models.clone_model(exported)
    raw_model.set_weights(exported.get_weights())
    for variable, value in zip(raw_model.trainable_variables, outside.raw_per_epoch[best], strict=True):
        variable.assign(value)
    raw_predicted = np.asarray(raw_model(normalize(val.images), training=False)).argmax(axis=1)
    print(
        f"val_accuracy per epoch (EMA) {val_accuracy}; best epoch {best + 1}: "
        f"EMA {ema_accuracy:.4f} vs raw {float(np.mean(raw_predicted == val.labels)):.4f}"
    )
