"""The model zoo: every seed network by name, plus ``cnn``, the best design for CPU.

Each builder is a pure function ``build(num_classes, *, total_steps, learning_rate)`` that
returns ``(model, optimizer)``: an uncompiled functional ``keras.Model`` mapping float32
[B, 28, 28, 1] inputs in [0, 1] to float32 [B, num_classes] softmax probabilities, and its
default optimiser. Models use stock Keras layers only (no ``Lambda``, no custom classes), so
their ``.keras`` files load with ``safe_mode=True`` and without this package. The final
softmax is always float32, so ``mixed_float16`` keeps a numerically safe output.

Call builders inside ``strategy.scope()`` so their variables are distributed.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping

import keras
from keras import layers

from mnist_batch.constants import MODEL_INPUT_SHAPE

Builder = Callable[..., tuple[keras.Model, keras.optimizers.Optimizer]]

_REGISTRY: dict[str, Builder] = {}
"""Zoo name -> builder, filled by :func:`register` (in definition order)."""


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder to the zoo under ``name`` (the ``--model`` value).

    Args:
      name: the zoo name; must be new.

    Returns:
      A decorator that registers the builder and returns it unchanged.

    Raises:
      ValueError: ``name`` is already registered.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"zoo name {name!r} is already registered (by {_REGISTRY[name].__name__})")
        _REGISTRY[name] = builder
        return builder

    return decorator


def model_names() -> tuple[str, ...]:
    """Every zoo name, in registration order."""
    return tuple(_REGISTRY)


def get_model_builder(name: str) -> Builder:
    """The builder registered as ``name``.

    Raises:
      ValueError: unknown name (the message lists the zoo).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(model_names())}, got {name!r}") from None


MNIST_MEAN = 0.1307
"""Mean pixel value of MNIST in [0, 1] (used to standardise inputs of ``mlp-300-100``)."""
MNIST_STD = 0.3081
"""Standard deviation of MNIST pixels in [0, 1]."""
EMA_MIN_STEPS = 500
"""``cnn`` keeps a weight moving average only for runs of at least this many steps."""


def _inputs() -> keras.KerasTensor:
    return keras.Input(shape=MODEL_INPUT_SHAPE, name="image")


def _head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Dense logits then a float32 softmax (kept in float32 under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


@register("mlp-sigmoid-15")
def mlp_sigmoid_15(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """784 -> 15 sigmoid -> 10 softmax, RMSprop (the smallest seed network).

    Args:
      num_classes: C.
      total_steps: training steps in all (unused: constant learning rate).
      learning_rate: overrides the default 1e-3.

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], RMSprop)``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(15, activation="sigmoid", name="hidden")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="mlp_sigmoid_15")
    return model, keras.optimizers.RMSprop(learning_rate=learning_rate or 1e-3)


@register("mlp-512")
def mlp_512(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """784 -> 512 relu -> 10 softmax, RMSprop.

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], RMSprop(1e-3))``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(512, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="mlp_512")
    return model, keras.optimizers.RMSprop(learning_rate=learning_rate or 1e-3)


@register("mlp-300-100")
def mlp_300_100(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """Flatten -> standardise -> 300 relu -> 100 relu -> 10 softmax, SGD with momentum.

    Standardisation is a ``Rescaling`` layer with MNIST's mean and std (stock layer, saved
    in the model), so callers still feed [0, 1] inputs.

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], SGD(0.05, momentum 0.9))``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Rescaling(scale=1.0 / MNIST_STD, offset=-MNIST_MEAN / MNIST_STD, name="standardise")(x)
    x = layers.Dense(300, activation="relu", name="hidden_300")(x)
    x = layers.Dense(100, activation="relu", name="hidden_100")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="mlp_300_100")
    return model, keras.optimizers.SGD(learning_rate=learning_rate or 0.05, momentum=0.9)


@register("mlp-deep-20")
def mlp_deep_20(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """20 x Dense(100, relu) -> 10 softmax, plain SGD (the "deeper is not better" seed).

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], SGD(0.01))``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Flatten(name="flatten")(inputs)
    for i in range(20):
        x = layers.Dense(100, activation="relu", name=f"hidden_{i + 1}")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="mlp_deep_20")
    return model, keras.optimizers.SGD(learning_rate=learning_rate or 0.01)


@register("mlp-1000x2-dropout")
def mlp_1000x2_dropout(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """1000 relu -> Dropout 0.5 -> 1000 relu -> Dropout 0.5 -> 10 softmax, Adam.

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], Adam(1e-3))``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(1000, activation="relu", name="hidden_1")(x)
    x = layers.Dropout(0.5, name="dropout_1")(x)
    x = layers.Dense(1000, activation="relu", name="hidden_2")(x)
    x = layers.Dropout(0.5, name="dropout_2")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="mlp_1000x2_dropout")
    return model, keras.optimizers.Adam(learning_rate=learning_rate or 1e-3)


@register("cnn-keras")
def cnn_keras(num_classes: int = 10, *, total_steps: int = 1000, learning_rate: float | None = None):
    """The Keras example CNN: Conv32-Conv64-MaxPool-Dropout0.25-Dense128-Dropout0.5-Dense10, Adam.

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], Adam(1e-3))``.
    """
    del total_steps
    inputs = _inputs()
    x = layers.Conv2D(32, 3, activation="relu", name="conv_1")(inputs)
    x = layers.Conv2D(64, 3, activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dropout(0.25, name="dropout_1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout_2")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="cnn_keras")
    return model, keras.optimizers.Adam(learning_rate=learning_rate or 1e-3)


def _conv_bn(x: keras.KerasTensor, filters: int, name: str, sync: bool = False) -> keras.KerasTensor:
    """3x3 conv (no bias) -> batch norm -> ReLU.

    Batch-norm momentum is 0.9, not Keras' 0.99: a run of a few hundred steps must leave
    the moving statistics (used at inference) close to the real ones. ``sync`` computes
    batch statistics over the global batch of all replicas, so every replica ends with
    the same moving statistics.
    """
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, synchronized=sync, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


@register("cnn")
def cnn(
    num_classes: int = 10,
    *,
    total_steps: int = 1000,
    learning_rate: float | None = None,
    sync_batch_norm: bool = False,
):
    """The default: a small VGG-style CNN with batch norm, sized for 2 CPU cores.

    ``[conv-bn-relu x2 -> maxpool] (32, 96 filters) -> conv-bn-relu 192 -> global average
    pool -> dropout 0.3 -> dense``. The first block, at full 28x28 resolution, costs most per
    image: at 32 filters (48 before issue 31) a step is about a fifth cheaper, which pays for
    the longer default run (20 epochs) that the not-digit recipe needs (docs/training.md). Trained with AdamW (weight decay 1e-4) and a cosine
    learning-rate schedule after a linear warm-up over the first 5 % of steps, keeping an
    exponential moving average of the weights (momentum 0.99; runs of at least
    :data:`EMA_MIN_STEPS` steps) that replaces them at the end of training; with the pipeline's augmentation and label smoothing. Measured on the
    bundled sample: docs/benchmarks.md ("Training").

    Args:
      num_classes: C.
      total_steps: training steps in all (length of the cosine schedule).
      learning_rate: peak learning rate (default 3e-3).
      sync_batch_norm: synchronise batch-norm statistics across replicas (multi-replica runs).

    Returns:
      ``(model [B, 28, 28, 1] -> [B, C], AdamW with EMA and a warm-up + cosine schedule)``.
    """
    first, width = 32, 48
    inputs = _inputs()
    x = _conv_bn(inputs, first, "block1a", sync_batch_norm)
    x = _conv_bn(x, first, "block1b", sync_batch_norm)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = _conv_bn(x, 2 * width, "block2a", sync_batch_norm)
    x = _conv_bn(x, 2 * width, "block2b", sync_batch_norm)
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    x = _conv_bn(x, 4 * width, "block3", sync_batch_norm)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    model = keras.Model(inputs, _head(x, num_classes), name="cnn")
    peak = learning_rate or 3e-3
    total_steps = max(int(total_steps), 2)
    warmup = max(1, total_steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        decay_steps=total_steps - warmup,
        alpha=0.01,
        warmup_target=peak,
        warmup_steps=warmup,
    )
    # The average needs a few hundred steps to forget the initial weights (0.99**500 < 1 %),
    # so short runs (smoke tests, tiny data sets) train without it.
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=1e-4, use_ema=total_steps >= EMA_MIN_STEPS, ema_momentum=0.99
    )
    return model, optimizer


MODELS: Mapping[str, Builder] = types.MappingProxyType(_REGISTRY)
"""Zoo name -> builder (read-only view of the registry)."""

MODEL_NAMES = model_names()
DEFAULT_MODEL = "cnn"


def build_model(
    name: str,
    num_classes: int = 10,
    *,
    total_steps: int = 1000,
    learning_rate: float | None = None,
    replicas: int = 1,
) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """Looks up ``name`` in the zoo and builds it.

    Args:
      name: zoo name.
      num_classes: C.
      total_steps: training steps in all (for learning-rate schedules).
      learning_rate: overrides the builder's default.
      replicas: replicas in sync; > 1 turns on synchronised batch norm where a model has it.

    Raises:
      ValueError: unknown name (the message lists the zoo).
    """
    builder = get_model_builder(name)
    kwargs = {"total_steps": total_steps, "learning_rate": learning_rate}
    if replicas > 1 and "sync_batch_norm" in inspect.signature(builder).parameters:
        kwargs["sync_batch_norm"] = True
    return builder(num_classes, **kwargs)
