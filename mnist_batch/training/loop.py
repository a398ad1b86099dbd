"""The custom training loop used under ``MultiWorkerMirroredStrategy``.

Keras 3's ``model.fit`` fails under MultiWorkerMirroredStrategy ("Attempt to convert a value
(PerReplica...)", keras-team/keras#20585). This loop trains the same compiled model with
``strategy.experimental_distribute_dataset`` and a ``tf.function`` step that calls
``strategy.run`` on a ``tf.GradientTape`` update, averaging the per-example loss over the
global batch with ``tf.nn.compute_average_loss``. It drives the SAME Keras callbacks as
``fit`` (BackupAndRestore, ModelCheckpoint, EarlyStopping, CSVLogger, progress bar), so
resume, checkpoints and history behave the same on both paths.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _reduce_sum(strategy: tf.distribute.Strategy, values):
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]


def fit_distributed(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    *,
    epochs: int,
    steps_per_epoch: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
    initial_epoch: int = 0,
    label_smoothing: float = 0.0,
) -> keras.callbacks.History:
    """Trains ``model`` (built and compiled inside ``strategy.scope()``) for ``epochs`` epochs.

    Args:
      model: a compiled Keras model; its ``optimizer`` is used.
      strategy: the distribution strategy the model was built under.
      train_ds: yields ``(float32 [GB, 28, 28, 1], float32 [GB, C])`` global batches.
      val_ds: the validation pipeline, same element spec, or None.
      epochs: total epochs (a resumed run starts at ``initial_epoch``).
      steps_per_epoch: batches per epoch (for the progress bar).
      callbacks: Keras callbacks, called exactly as ``fit`` calls them.
      verbose: Keras progress bar when 1.
      initial_epoch: epochs already completed, i.e. those recorded in the backup that
        ``BackupAndRestore`` restores in ``on_train_begin``
        (:func:`mnist_batch.training.compat.backup_completed_epochs`).
      label_smoothing: of the categorical cross-entropy.

    Returns:
      The ``History`` callback (``history.history`` maps metric -> per-epoch values).
    """
    train_step, eval_step = step_functions(model, strategy, label_smoothing)
    dist_train = strategy.experimental_distribute_dataset(train_ds)
    dist_val = strategy.experimental_distribute_dataset(val_ds) if val_ds is not None else None
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose == 1,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    epoch_logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        epoch_logs = train_epoch(model, train_step, dist_train, callback_list)
        if dist_val is not None:
            # on_test_begin / on_test_end as fit's validation calls them (EmaWeights swaps the EMA in).
            callback_list.on_test_begin()
            val_logs = sums_to_logs(*run_steps(eval_step, dist_val))
            callback_list.on_test_end(val_logs)
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if epochs > 0:
        # As fit does: swap in the EMA weights when the optimiser keeps them (use_ema=True).
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


def step_functions(model: keras.Model, strategy: tf.distribute.Strategy, label_smoothing: float):
    """``(train_step, eval_step)``: ``tf.function``s of one distributed global batch, each returning
    the batch's summed loss, correct predictions and examples (scalars, summed over replicas)."""
    loss_obj = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
    optimizer = model.optimizer
    scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def per_example_loss(y, probs):
        return tf.cast(loss_obj(y, tf.cast(probs, tf.float32)), tf.float32)

    def correct(y, probs):
        hits = tf.equal(tf.argmax(probs, axis=-1), tf.argmax(y, axis=-1))
        return tf.reduce_sum(tf.cast(hits, tf.float32))

    def train_step_fn(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            losses = per_example_loss(y, probs)
            loss = tf.nn.compute_average_loss(losses)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if scale_loss else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return tf.reduce_sum(losses), correct(y, probs), tf.cast(tf.shape(y)[0], tf.float32)

    def eval_step_fn(x, y):
        probs = model(x, training=False)
        return tf.reduce_sum(per_example_loss(y, probs)), correct(y, probs), tf.cast(tf.shape(y)[0], tf.float32)

    @tf.function
    def train_step(batch):
        return _reduce_sum(strategy, strategy.run(train_step_fn, args=batch))

    @tf.function
    def eval_step(batch):
        return _reduce_sum(strategy, strategy.run(eval_step_fn, args=batch))

    return train_step, eval_step


def train_epoch(model: keras.Model, train_step, dist_train, callback_list) -> dict[str, float]:
    """One pass over ``dist_train`` with the batch callbacks, as ``fit`` calls them; the epoch's logs."""
    loss_sum = hits = seen = 0.0
    for step, batch in enumerate(dist_train):
        callback_list.on_train_batch_begin(step)
        batch_loss, batch_hits, batch_n = (float(v) for v in train_step(batch))
        loss_sum, hits, seen = loss_sum + batch_loss, hits + batch_hits, seen + batch_n
        callback_list.on_train_batch_end(step, {"loss": loss_sum / seen, "accuracy": hits / seen})
        if model.stop_training:
            break
    return sums_to_logs(loss_sum, hits, seen)


def run_steps(step, dataset) -> tuple[float, float, float]:
    """``step`` over every batch of ``dataset``: summed loss, correct predictions, examples."""
    loss_sum = hits = seen = 0.0
    for batch in dataset:
        batch_loss, batch_hits, batch_n = (float(v) for v in step(batch))
        loss_sum, hits, seen = loss_sum + batch_loss, hits + batch_hits, seen + batch_n
    return loss_sum, hits, seen


def sums_to_logs(loss_sum: float, hits: float, seen: float) -> dict[str, float]:
    return {"accuracy": hits / max(seen, 1.0), "loss": loss_sum / max(seen, 1.0)}
