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
from mnist_batch.data import load_dataset
from mnist_batch.data.base import Dataset, Split
from mnist_batch.errors import DataError, MnistBatchError
from mnist_batch.model_card import ModelCard
from mnist_batch.training import callbacks as cb
from mnist_batch.training import strategy as strat
from mnist_batch.training.augment import DEFAULT_AUGMENT
from mnist_batch.training.export import check_export_path, check_runtimes, export_model
from mnist_batch.training.loop import fit_distributed
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
    for name in ("train", "validation", "test"):
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
    if strategy is None:
        strategy = strat.make_strategy(config.strategy, allow_cpu=config.allow_cpu)
    multi_worker = strat.is_multi_worker(strategy)
    chief = strat.is_chief(strategy)
    _, task_id = strat.worker_task(strategy)
    replicas = strategy.num_replicas_in_sync
    precision = strat.configure_precision(config.mixed_precision)
    verbose = resolve_verbose(config.verbose) if chief else 0

    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise MnistBatchError("--tensorboard needs the tensorboard package: pip install tensorboard")
    dataset = datasets if datasets is not None else load_dataset(config.dataset)
    splits = prepare_splits(dataset, config.limit)
    if config.export and chief:
        check_export_path(config.export)
        check_runtimes(config.export_runtimes)
    run_dir = None
    if config.run_dir:
        run_dir = cb.RunDir.for_task(config.run_dir, is_chief=chief, task_id=task_id)
        run_dir.prepare()
    resume_from = run_dir.resume_epoch() if run_dir else 0
    if chief and resume_from:
        print(f"resuming from epoch {resume_from} (backup in {run_dir.backup})", flush=True)

    batch = global_batch_size(config.batch_size, strategy)
    train_split, val_split = splits["train"], splits["validation"]
    train_ds = make_dataset(
        train_split.images,
        train_split.labels,
        num_classes=dataset.num_classes,
        batch_size=batch,
        training=True,
        augment=config.augment,
        augment_params=dataclasses.replace(
            DEFAULT_AUGMENT, flip=config.flip, max_rotation_deg=config.rotation, max_zoom=config.zoom
        ),
        seed=config.seed,
        cache_dir=config.cache_dir,
        name="train",
    )
    val_ds = make_dataset(
        val_split.images,
        val_split.labels,
        num_classes=dataset.num_classes,
        batch_size=global_batch_size(EVAL_BATCH_PER_REPLICA, strategy),
        training=False,
        cache_dir=config.cache_dir,
        name="validation",
    )
    steps_per_epoch = math.ceil(len(train_split) / batch)

    with strategy.scope():
        model, optimizer = build_model(
            config.model,
            dataset.num_classes,
            total_steps=steps_per_epoch * config.epochs,
            learning_rate=config.learning_rate,
            replicas=replicas,
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        optimizer.build(model.trainable_variables)

    callbacks = cb.build_callbacks(
        run_dir,
        epochs=config.epochs,
        verbose=verbose,
        patience=config.patience,
        tensorboard=config.tensorboard,
        resuming=resume_from > 0,
        start_from_epoch=cb.ema_warmup_epochs(optimizer, steps_per_epoch),
    )
    if chief:
        print(
            f"training {config.model} on {dataset.name}: {len(train_split):,} train / {len(val_split):,} validation "
            f"images, {config.epochs} epochs, batch {batch} ({config.batch_size} x {replicas} replica(s)), "
            f"{strat.strategy_label(strategy)}, {precision}",
            flush=True,
        )
    start = time.perf_counter()
    if multi_worker:
        history = fit_distributed(
            model,
            strategy,
            train_ds,
            val_ds,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=1 if verbose == 1 else 0,
            initial_epoch=resume_from,
            label_smoothing=config.label_smoothing,
        )
    else:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=1 if verbose == 1 else 0,
            shuffle=False,  # the pipeline shuffles
        )
    wall = time.perf_counter() - start
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    epochs_run = resume_from + len(values.get("loss", []))

    if run_dir is not None:
        if chief and run_dir.history.is_file():
            # The same plot `mnist-batch report RUN_DIR` draws.
            from mnist_batch.training import curves

            try:
                history_rows = curves.read_history_csv(run_dir.history)
            except ValueError:  # no epoch recorded
                history_rows = None
            if history_rows:
                title = f"{config.model} on {dataset.name}"
                curves.plot_learning_curves(history_rows, run_dir.learning_curve, title=title)
        run_dir.discard_worker_files()

    result = TrainResult(
        model=model,
        history=values,
        initial_epoch=resume_from,
        epochs_run=epochs_run,
        wall_time_s=wall,
        strategy=strat.strategy_label(strategy),
        replicas=replicas,
        is_chief=chief,
        split_sizes={name: len(split) for name, split in splits.items()},
        run_dir=run_dir,
        precision=precision,
    )
    if config.export and chief:
        extra: dict[str, Any] = {
            "config": dataclasses.asdict(config),
            "global_batch_size": batch,
            "precision": precision,
            "resumed_from_epoch": resume_from,
            "history": values,
        }
        path, card = export_model(
            model,
            config.export,
            model_name=config.model,
            dataset=dataset.name,
            class_names=dataset.class_names,
            split_sizes=result.split_sizes,
            test_split=splits.get("test"),
            epochs=epochs_run,
            strategy=result.strategy,
            replicas=replicas,
            wall_time_s=wall,
            extra=json.loads(json.dumps(extra, default=str)),
            runtimes=config.export_runtimes,
        )
        result.export_path, result.card = str(path), card
    return result
