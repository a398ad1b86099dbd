"""``train(config)``: data -> strategy -> pipelines -> model -> fit (or custom loop) -> export.

Two paths, one behaviour: single-process strategies (default, one-device, mirrored) use
``model.fit``; ``MultiWorkerMirroredStrategy`` uses :func:`mnist_batch.training.loop.fit_distributed`
(Keras 3's ``fit`` fails there, keras-team/keras#20585). Both drive the same callbacks
(:mod:`mnist_batch.training.callbacks`), so resume, best checkpoint, early stopping and CSV
history work the same. Only the chief writes the run dir and the export.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_batch.config import TrainConfig
from mnist_batch.constants import SPLITS
from mnist_batch.data import load_dataset
from mnist_batch.data.base import Dataset, Split
from mnist_batch.errors import DataError, MnistBatchError
from mnist_batch.model_card import ModelCard
from mnist_batch.training import callbacks as cb
from mnist_batch.training import strategy as strat
from mnist_batch.training.augment import DEFAULT_AUGMENT
from mnist_batch.training.export import check_export_path, check_runtimes, export_model
from mnist_batch.training.loop import fit_distributed
from mnist_batch.training.not_digit import with_negatives
from mnist_batch.training.pipeline import check_arrays, global_batch_size, make_dataset
from mnist_batch.training.zoo import build_model

EVAL_BATCH_PER_REPLICA = 512


@dataclasses.dataclass
class TrainResult:
    """What one run produced.

    Attributes:
      model: the trained model (best weights restored when early stopping triggered).
      history: ``metric -> [value per epoch run in this process]``.
      initial_epoch: epochs already done by an interrupted run this one resumed (0: fresh).
      epochs_run: epochs completed in all (initial_epoch + this process).
      wall_time_s: training wall time of this process.
      strategy: strategy class name; replicas: replicas in sync; is_chief: this process writes.
      split_sizes: examples per split used.
      run_dir: the chief's run dir layout (None without ``--run-dir``).
      export_path / card: the export (None without ``--export`` or on non-chief workers).
      precision: the Keras dtype policy used.
    """

    model: keras.Model
    history: dict[str, list[float]]
    initial_epoch: int
    epochs_run: int
    wall_time_s: float
    strategy: str
    replicas: int
    is_chief: bool
    split_sizes: dict[str, int]
    run_dir: cb.RunDir | None = None
    export_path: str | None = None
    card: ModelCard | None = None
    precision: str = "float32"


def _limit(split: Split, limit: int | None) -> Split:
    if limit is None or len(split) <= limit:
        return split
    # Evenly spaced rows keep every class of a label-sorted split.
    index = np.linspace(0, len(split) - 1, num=limit).round().astype(np.int64)
    return Split(split.images[index], split.labels[index])


def prepare_splits(dataset: Dataset, limit: int | None = None) -> dict[str, Split]:
    """The train / validation (/ test) splits to use, checked for training.

    Raises:
      DataError: no train or validation split, an empty split, bad shapes or labels.
    """
    splits = {name: _limit(split, limit) for name, split in dataset.splits.items()}
    for name in SPLITS:
        if name in splits:
            split = splits[name]
            check_arrays(split.images, split.labels, num_classes=dataset.num_classes, where=f"{dataset.name} [{name}]")
        elif name != "test":
            have = ", ".join(f"{n} ({len(s)})" for n, s in splits.items()) or "none"
            raise DataError(f"{dataset.name}: no {name!r} split to train with (splits: {have})")
    return splits


def resolve_verbose(verbose: int | None) -> int:
    """Keras progress bar (1) on a terminal, one line per epoch (2) otherwise."""
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where one process trains: its strategy, role, precision and output verbosity."""

    strategy: tf.distribute.Strategy
    chief: bool
    task_id: int
    replicas: int
    precision: str
    verbose: int


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The data of one run: the data set, its splits and the two input pipelines."""

    dataset: Dataset
    splits: dict[str, Split]
    train: tf.data.Dataset
    validation: tf.data.Dataset
    batch: int
    """The global batch size."""
    steps_per_epoch: int
    negatives: int = 0
    """Generated non-digits added to the training split (class C, the extra output); 0: none."""

    @property
    def outputs(self) -> int:
        """The model's output units: C, plus the not-digit output when trained with negatives."""
        return self.dataset.num_classes + (1 if self.negatives else 0)


def train(
    config: TrainConfig,
    *,
    strategy: tf.distribute.Strategy | None = None,
    datasets: Dataset | None = None,
) -> TrainResult:
    """Trains ``config.model`` on ``config.dataset`` and exports it when ``config.export`` is set.

    Args:
      config: the validated settings.
      strategy: use this strategy instead of building ``config.strategy`` (tests, notebooks).
      datasets: use this :class:`~mnist_batch.data.Dataset` instead of loading ``config.dataset``.

    Returns:
      A :class:`TrainResult`.

    Raises:
      DataError: bad or empty data. ExportError / MnistBatchError: export path or run dir not
      writable. TrainingError: the loss became NaN. ValueError: invalid strategy combination.
    """
    keras.utils.set_random_seed(config.seed)
    setup = set_up(config, strategy)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise MnistBatchError("--tensorboard needs the tensorboard package: pip install tensorboard")
    dataset = datasets if datasets is not None else load_dataset(config.dataset)
    splits = prepare_splits(dataset, config.limit)
    if config.export and setup.chief:
        check_export_path(config.export)
        check_runtimes(config.export_runtimes)
    run_dir = open_run_dir(config, setup)
    resume_from = run_dir.resume_epoch() if run_dir else 0
    if setup.chief and resume_from:
        print(f"resuming from epoch {resume_from} (backup in {run_dir.backup})", flush=True)
    inputs = input_pipelines(config, setup, dataset, splits)
    model, optimizer = compiled_model(config, setup, inputs)
    callbacks = cb.build_callbacks(
        run_dir,
        epochs=config.epochs,
        verbose=setup.verbose,
        patience=config.patience,
        tensorboard=config.tensorboard,
        resuming=resume_from > 0,
        start_from_epoch=cb.ema_warmup_epochs(optimizer, inputs.steps_per_epoch),
    )
    if setup.chief:
        print(start_line(config, setup, inputs), flush=True)
    start = time.perf_counter()
    history = fit(config, setup, inputs, model, callbacks, resume_from)
    wall = time.perf_counter() - start
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    if run_dir is not None:
        if setup.chief:
            plot_learning_curve(run_dir, title=f"{config.model} on {dataset.name}")
        run_dir.discard_worker_files()
    result = TrainResult(
        model=model,
        history=values,
        initial_epoch=resume_from,
        epochs_run=resume_from + len(values.get("loss", [])),
        wall_time_s=wall,
        strategy=strat.strategy_label(setup.strategy),
        replicas=setup.replicas,
        is_chief=setup.chief,
        split_sizes={name: len(split) for name, split in splits.items()},
        run_dir=run_dir,
        precision=setup.precision,
    )
    if config.export and setup.chief:
        path, card = export_trained(config, inputs, result)
        result.export_path, result.card = str(path), card
    return result


def set_up(config: TrainConfig, strategy: tf.distribute.Strategy | None) -> Setup:
    """The strategy (``config.strategy`` unless given), this process's role, the dtype policy."""
    if strategy is None:
        strategy = strat.make_strategy(config.strategy, allow_cpu=config.allow_cpu)
    chief = strat.is_chief(strategy)
    _, task_id = strat.worker_task(strategy)
    precision = strat.configure_precision(config.mixed_precision)
    verbose = resolve_verbose(config.verbose) if chief else 0
    return Setup(strategy, chief, task_id, strategy.num_replicas_in_sync, precision, verbose)


def open_run_dir(config: TrainConfig, setup: Setup) -> cb.RunDir | None:
    """This task's run dir, prepared (None without ``--run-dir``)."""
    if not config.run_dir:
        return None
    run_dir = cb.RunDir.for_task(config.run_dir, is_chief=setup.chief, task_id=setup.task_id)
    run_dir.prepare()
    return run_dir


def input_pipelines(config: TrainConfig, setup: Setup, dataset: Dataset, splits: dict[str, Split]) -> Inputs:
    """The training pipeline (shuffled, augmented as configured) and the validation pipeline."""
    batch = global_batch_size(config.batch_size, setup.strategy)
    val_split = splits["validation"]
    train_split, negatives = with_negatives(splits["train"], dataset.num_classes, config.not_digit, config.seed)
    outputs = dataset.num_classes + (1 if negatives else 0)
    train_ds = make_dataset(
        train_split.images,
        train_split.labels,
        num_classes=outputs,
        batch_size=batch,
        training=True,
        augment=config.augment,
        augment_params=dataclasses.replace(
            DEFAULT_AUGMENT, flip=config.flip, max_rotation_deg=config.rotation, max_zoom=config.zoom
        ),
        damage=config.damage if config.augment else 0.0,
        seed=config.seed,
        cache_dir=config.cache_dir,
        name="train",
    )
    val_ds = make_dataset(
        val_split.images,
        val_split.labels,
        num_classes=outputs,
        batch_size=global_batch_size(EVAL_BATCH_PER_REPLICA, setup.strategy),
        training=False,
        cache_dir=config.cache_dir,
        name="validation",
    )
    return Inputs(dataset, splits, train_ds, val_ds, batch, math.ceil(len(train_split) / batch), negatives)


def compiled_model(config: TrainConfig, setup: Setup, inputs: Inputs) -> tuple[keras.Model, Any]:
    """The zoo model and its optimizer, built and compiled in the strategy's scope."""
    with setup.strategy.scope():
        model, optimizer = build_model(
            config.model,
            inputs.outputs,
            total_steps=inputs.steps_per_epoch * config.epochs,
            learning_rate=config.learning_rate,
            replicas=setup.replicas,
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        optimizer.build(model.trainable_variables)
    return model, optimizer


def start_line(config: TrainConfig, setup: Setup, inputs: Inputs) -> str:
    """The line the chief prints before the first epoch."""
    train_n, val_n = len(inputs.splits["train"]), len(inputs.splits["validation"])
    negatives = f" + {inputs.negatives:,} generated non-digits" if inputs.negatives else ""
    return (
        f"training {config.model} on {inputs.dataset.name}: {train_n:,} train{negatives} / {val_n:,} validation "
        f"images, {config.epochs} epochs, batch {inputs.batch} ({config.batch_size} x {setup.replicas} replica(s)), "
        f"{strat.strategy_label(setup.strategy)}, {setup.precision}"
    )


def fit(config: TrainConfig, setup: Setup, inputs: Inputs, model: keras.Model, callbacks, resume_from: int):
    """Trains: Keras ``fit`` in one process, the custom distributed loop across workers."""
    verbose = 1 if setup.verbose == 1 else 0
    if strat.is_multi_worker(setup.strategy):
        return fit_distributed(
            model,
            setup.strategy,
            inputs.train,
            inputs.validation,
            epochs=config.epochs,
            steps_per_epoch=inputs.steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            initial_epoch=resume_from,
            label_smoothing=config.label_smoothing,
        )
    return model.fit(
        inputs.train,
        validation_data=inputs.validation,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )


def plot_learning_curve(run_dir: cb.RunDir, *, title: str) -> None:
    """The same plot `mnist-batch report RUN_DIR` draws, from the run's CSV history."""
    if not run_dir.history.is_file():
        return
    from mnist_batch import curves

    try:
        history_rows = curves.read_history_csv(run_dir.history)
    except ValueError:  # no epoch recorded
        history_rows = None
    if history_rows:
        curves.plot_learning_curves(history_rows, run_dir.learning_curve, title=title)


def export_trained(config: TrainConfig, inputs: Inputs, result: TrainResult) -> tuple[Any, ModelCard]:
    """The trained model exported to ``config.export`` with its card (and runtime files)."""
    extra: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "global_batch_size": inputs.batch,
        "precision": result.precision,
        "resumed_from_epoch": result.initial_epoch,
        "history": result.history,
        "not_digit_train_negatives": inputs.negatives,
    }
    return export_model(
        result.model,
        config.export,
        model_name=config.model,
        dataset=inputs.dataset.name,
        class_names=inputs.dataset.class_names,
        split_sizes=result.split_sizes,
        test_split=inputs.splits.get("test"),
        epochs=result.epochs_run,
        strategy=result.strategy,
        replicas=result.replicas,
        wall_time_s=result.wall_time_s,
        extra=json.loads(json.dumps(extra, default=str)),
        runtimes=config.export_runtimes,
        validation_split=inputs.splits["validation"] if inputs.negatives else None,
        seed=config.seed,
    )
