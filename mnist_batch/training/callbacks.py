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
import csv
import dataclasses
import math
import os
import pathlib
import shutil
import sys
import time

import keras

from mnist_batch.errors import MnistBatchError


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
        import json

        meta = self.backup / "training_metadata.json"
        try:
            return int(json.loads(meta.read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

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
            if (self.run_dir.backup / "training_metadata.json").is_file():
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
) -> list[keras.callbacks.Callback]:
    """The callbacks of one run, in the order they must run.

    Args:
      run_dir: where to write (None: no backup, checkpoints or history).
      epochs: total epochs (for the summary line).
      verbose: 2 adds the one-line-per-epoch :class:`EpochSummary` (1 uses Keras' progress bar).
      patience: early-stopping patience on ``val_accuracy``; 0 disables early stopping.
      tensorboard: add the TensorBoard callback (needs ``run_dir``).
      resuming: append to the CSV history instead of starting it anew.

    Returns:
      A list for ``model.fit(callbacks=...)`` or the custom loop's ``CallbackList``.
    """
    callbacks: list[keras.callbacks.Callback] = [EpochStats(), NanGuard(run_dir)]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True, verbose=1
            )
        )
    if run_dir is not None:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(run_dir.best_checkpoint), monitor="val_accuracy", mode="max", save_best_only=True
            )
        )
        callbacks.append(EpochCSVLogger(str(run_dir.history), append=resuming))
        # Last of the writers: once the backup says "epoch N done", N's history row and
        # checkpoint are already on disk, so a kill after it loses nothing.
        callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir.backup), delete_checkpoint=True))
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir.tensorboard)))
    if verbose == 2:
        callbacks.append(EpochSummary(epochs))
    return callbacks


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a CSV history (``epoch`` plus the logged metrics), numbers as floats."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
        return rows
