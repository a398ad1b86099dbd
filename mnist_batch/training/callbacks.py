"""The run directory and the Keras callbacks both training paths share.

Layout of ``--run-dir DIR`` (chief)::

    DIR/backup/                 BackupAndRestore state (resume); removed when a run completes
    DIR/checkpoints/best.keras  best validation accuracy so far (ModelCheckpoint)
    DIR/history.csv             one row per epoch, numbered from 1 (CSVLogger; appended to on resume)
    DIR/learning_curve.png      loss and accuracy, train vs validation
    DIR/tensorboard/            with --tensorboard

Non-chief workers of a multi-worker run write the same layout under
``DIR/.workers/worker-<i>/`` (their backup is kept for resume, the rest is deleted), so
only the chief's files are ever read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import shutil
import sys
import time

import keras

from mnist_batch.errors import MnistBatchError
from mnist_batch.training import compat


class TrainingError(MnistBatchError):
    """Training cannot go on (e.g. the loss became NaN); the message says what was kept."""


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths of one process's run directory.

    Attributes:
      root: the directory this process writes to.
      is_chief: whether ``root`` is the user's run dir (False: a worker's private dir).
    """

    root: pathlib.Path
    is_chief: bool = True

    @classmethod
    def for_task(cls, run_dir: str | os.PathLike, *, is_chief: bool, task_id: int = 0) -> RunDir:
        base = pathlib.Path(run_dir)
        if is_chief:
            return cls(base, True)
        return cls(base / ".workers" / f"worker-{task_id}", False)

    @property
    def backup(self) -> pathlib.Path:
        return self.root / "backup"

    @property
    def best_checkpoint(self) -> pathlib.Path:
        return self.root / "checkpoints" / "best.keras"

    @property
    def history(self) -> pathlib.Path:
        return self.root / "history.csv"

    @property
    def learning_curve(self) -> pathlib.Path:
        return self.root / "learning_curve.png"

    @property
    def tensorboard(self) -> pathlib.Path:
        return self.root / "tensorboard"

    def prepare(self) -> None:
        """Creates the directories; a clear error if that is not possible."""
        try:
            self.best_checkpoint.parent.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise MnistBatchError(f"run dir {self.root} is not writable ({exc.strerror or exc})") from exc

    def resume_epoch(self) -> int:
        """Epochs completed by an interrupted earlier run (0 when starting fresh)."""
        return compat.backup_completed_epochs(self.backup)

    def discard_worker_files(self) -> None:
        """Deletes a worker's private copies (not its backup, which resume needs)."""
        if self.is_chief:
            return
        shutil.rmtree(self.best_checkpoint.parent, ignore_errors=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)
        for path in (self.history, self.learning_curve):
            path.unlink(missing_ok=True)


class EpochStats(keras.callbacks.Callback):
    """Adds ``epoch_time_s`` and ``learning_rate`` to each epoch's logs (so CSV history has them).

    Put it before the callbacks that record logs.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_time_s"] = round(time.perf_counter() - self._start, 3)
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """A ``CSVLogger`` whose ``epoch`` column counts from 1, as the console and the learning curve do."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class EpochSummary(keras.callbacks.Callback):
    """Prints one line per epoch (for logs that are not a terminal).

    Example: ``epoch 3/15  loss 0.6689  accuracy 0.9647  val_loss 0.6471  val_accuracy 0.9720  lr 2.9e-03  7.1 s``.
    """

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, epochs: int, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [f"{key} {float(logs[key]):.4f}" for key in self.KEYS if key in logs]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.1e}")
        if "epoch_time_s" in logs:
            parts.append(f"{logs['epoch_time_s']:.1f} s")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


def ema_optimizer(optimizer: keras.optimizers.Optimizer | None) -> keras.optimizers.Optimizer | None:
    """The optimizer that keeps a weight moving average (EMA), or None when none does.

    Looks inside a ``LossScaleOptimizer`` (``mixed_float16``), whose own ``use_ema`` is False.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return inner if getattr(inner, "use_ema", False) else None


EMA_WARMUP_SHARE = 0.05
"""Early stopping judges EMA weights only once the initial weights' share in them is below this."""


def ema_warmup_epochs(optimizer: keras.optimizers.Optimizer | None, steps_per_epoch: int) -> int:
    """Epochs before the weight moving average is worth judging (0 without one).

    The average starts at the first step's weights and forgets them by ``ema_momentum`` per
    step; until their share falls below :data:`EMA_WARMUP_SHARE` (299 steps at momentum
    0.99) its validation accuracy says little about the run (measured: 10 %, 31 %, 31 % in
    the first three epochs of the default ``cnn`` run, while the raw weights scored 79 %,
    97 %, 98 %), so early stopping starts counting after that.

    Args:
      optimizer: the model's optimizer (a ``LossScaleOptimizer`` is looked into).
      steps_per_epoch: training steps per epoch.

    Returns:
      The value for ``EarlyStopping(start_from_epoch=...)``.
    """
    ema = ema_optimizer(optimizer)
    momentum = float(ema.ema_momentum) if ema is not None else 0.0
    if not 0.0 < momentum < 1.0:
        return 0
    steps = math.ceil(math.log(EMA_WARMUP_SHARE) / math.log(momentum))
    return math.ceil(steps / max(int(steps_per_epoch), 1))


class EmaWeights(keras.callbacks.Callback):
    """Puts the optimizer's weight moving average (EMA) in the model whenever weights are judged or kept.

    With an optimizer built with ``use_ema=True`` (``cnn``), the model holds the EMA weights
    during validation (``on_test_begin`` .. ``on_test_end``), so ``val_accuracy`` is that of
    the EMA weights; in ``on_epoch_end`` from this callback up to :attr:`restore` (put that
    one after the checkpoint / early-stopping writers and before ``BackupAndRestore``), so the
    best checkpoint and early stopping's best weights are EMA weights; and at the end of
    training, so the final model is the EMA one on every path (Keras' ``fit`` skips this
    under a ``LossScaleOptimizer``). In between, training and the backup see the raw weights,
    so a resumed run continues exactly where it stopped. Public API only: the EMA goes in
    with ``optimizer.finalize_variable_values``; the raw weights are copied and assigned back.
    Does nothing when the optimizer keeps no EMA.
    """

    def __init__(self):
        super().__init__()
        self._raw: list | None = None
        self.restore = RawWeightsBack(self)
        """The partner callback that puts the raw weights back at the end of an epoch."""

    def put_ema(self) -> None:
        """Swaps the EMA weights in (keeping a copy of the raw ones); idempotent."""
        optimizer = ema_optimizer(self.model.optimizer)
        if optimizer is None or self._raw is not None:
            return
        variables = self.model.trainable_variables
        self._raw = [keras.ops.convert_to_numpy(v) for v in variables]
        optimizer.finalize_variable_values(variables)

    def put_raw(self) -> None:
        """Puts back the raw weights saved by :meth:`put_ema`; idempotent."""
        if self._raw is None:
            return
        for variable, value in zip(self.model.trainable_variables, self._raw, strict=True):
            variable.assign(value)
        self._raw = None

    def on_test_begin(self, logs=None):
        self.put_ema()

    def on_test_end(self, logs=None):
        self.put_raw()

    def on_epoch_end(self, epoch, logs=None):
        self.put_ema()

    def on_train_end(self, logs=None):
        # Before EarlyStopping's own on_train_end, which then restores the best epoch's EMA weights.
        self._raw = None
        optimizer = ema_optimizer(self.model.optimizer)
        if optimizer is not None:
            optimizer.finalize_variable_values(self.model.trainable_variables)


class RawWeightsBack(keras.callbacks.Callback):
    """Ends :class:`EmaWeights`' epoch-end window: the raw weights go back before training goes on."""

    def __init__(self, ema: EmaWeights):
        super().__init__()
        self.ema = ema

    def on_epoch_end(self, epoch, logs=None):
        self.ema.put_raw()


class NanGuard(keras.callbacks.Callback):
    """Stops at the first batch whose loss is NaN or infinite, before anything saves bad weights.

    Raising from ``on_train_batch_end`` ends training before ``on_epoch_end``, so the backup
    and the best checkpoint still hold the last good epoch.
    """

    def __init__(self, run_dir: RunDir | None = None):
        super().__init__()
        self.run_dir = run_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(keras.ops.convert_to_numpy(loss))
        if math.isfinite(loss):
            return
        kept = "no run dir, nothing was kept"
        if self.run_dir is not None:
            kept = []
            if self.run_dir.best_checkpoint.is_file():
                kept.append(f"best checkpoint {self.run_dir.best_checkpoint}")
            if compat.has_backup(self.run_dir.backup):
                kept.append(f"last completed epoch in {self.run_dir.backup}")
            kept = "kept " + " and ".join(kept) if kept else "no epoch had completed, nothing was kept"
        raise TrainingError(
            f"loss became {loss} at epoch {self._epoch + 1}, batch {batch + 1}; training stopped ({kept}). "
            "Try a lower --learning-rate."
        )


def build_callbacks(
    run_dir: RunDir | None,
    *,
    epochs: int,
    verbose: int,
    patience: int,
    tensorboard: bool,
    resuming: bool,
    start_from_epoch: int = 0,
) -> list[keras.callbacks.Callback]:
    """The callbacks of one run, in the order they must run.

    Between :class:`EmaWeights` and its ``restore`` partner the model holds the EMA weights
    (when the optimizer keeps them): early stopping and the best checkpoint judge and keep
    those; ``BackupAndRestore`` comes after, so the backup holds the raw weights.

    Args:
      run_dir: where to write (None: no backup, checkpoints or history).
      epochs: total epochs (for the summary line).
      verbose: 2 adds the one-line-per-epoch :class:`EpochSummary` (1 uses Keras' progress bar).
      patience: early-stopping patience on ``val_accuracy``; 0 disables early stopping.
      tensorboard: add the TensorBoard callback (needs ``run_dir``).
      resuming: append to the CSV history instead of starting it anew.
      start_from_epoch: epochs early stopping neither judges nor counts
        (:func:`ema_warmup_epochs` for an optimizer with a weight moving average).

    Returns:
      A list for ``model.fit(callbacks=...)`` or the custom loop's ``CallbackList``.
    """
    ema = EmaWeights()
    callbacks: list[keras.callbacks.Callback] = [EpochStats(), NanGuard(run_dir), ema]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=patience,
                restore_best_weights=True,
                start_from_epoch=start_from_epoch,
                verbose=1,
            )
        )
    if run_dir is not None:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(run_dir.best_checkpoint), monitor="val_accuracy", mode="max", save_best_only=True
            )
        )
        callbacks.append(EpochCSVLogger(str(run_dir.history), append=resuming))
    # The raw weights go back before the backup (resume continues from them) and training.
    callbacks.append(ema.restore)
    if run_dir is not None:
        # Last of the writers: once the backup says "epoch N done", N's history row and
        # checkpoint are already on disk, so a kill after it loses nothing.
        callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir.backup), delete_checkpoint=True))
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir.tensorboard)))
    if verbose == 2:
        callbacks.append(EpochSummary(epochs))
    return callbacks
