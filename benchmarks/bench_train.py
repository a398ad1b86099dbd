"""Training benchmark: every zoo model on the bundled sample, and the input pipeline vs the step.

Run (figures go to docs/benchmarks.md, "## Training")::

    .venv/bin/python benchmarks/bench_train.py            # full: every model, its full recipe
    .venv/bin/python benchmarks/bench_train.py --quick    # smoke: 1 epoch on 1,000 images

Part 1, the zoo: each model trained with ``mnist_batch.training.train`` on the same split of
the sample (7,000 train / 1,000 validation / 2,000 test), exported, and scored on the test
split by the export code (the model card's test metrics). The seed networks run their recipes
as published (no augmentation, no label smoothing); ``cnn`` runs its own (augmentation, AdamW with
warm-up + cosine and a weight moving average).

Part 2, the input pipeline: images/s that the training tf.data pipeline (with augmentation)
delivers alone, against images/s of a ``cnn`` training step fed from memory, with and without
``cache()`` / ``prefetch()``, and ``fit`` throughput through each pipeline variant. Ratios are
within this run, so they hold on a noisy machine; absolute figures do not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from mnist_batch.config import TrainConfig
from mnist_batch.data import load_dataset
from mnist_batch.data.base import Dataset, Split
from mnist_batch.training.pipeline import make_dataset
from mnist_batch.training.train import train
from mnist_batch.training.zoo import MODEL_NAMES, build_model

RECIPES = {
    # model: (epochs, augment, label_smoothing)
    "mlp-sigmoid-15": (20, False, 0.0),
    "mlp-512": (20, False, 0.0),
    "mlp-300-100": (20, False, 0.0),
    "mlp-deep-20": (20, False, 0.0),
    "mlp-1000x2-dropout": (20, False, 0.0),
    "cnn-keras": (10, False, 0.0),
    "cnn": (TrainConfig().epochs, True, TrainConfig().label_smoothing),
}


def bench_zoo(dataset: Dataset, models: list[str], quick: bool, epochs_override: int | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            epochs, augment, smoothing = RECIPES[name]
            if quick:
                epochs = 1
            if epochs_override:
                epochs = epochs_override
            config = TrainConfig(
                model=name,
                epochs=epochs,
                augment=augment,
                label_smoothing=smoothing,
                limit=1000 if quick else None,
                export=os.path.join(tmp, f"{name}.keras"),
                verbose=0,
            )
            print(f"  training {name} ({epochs} epochs) ...", flush=True)
            result = train(config, datasets=dataset)
            m = result.card.test_metrics
            rows.append(
                {
                    "model": name,
                    "params": result.model.count_params(),
                    "epochs": result.epochs_run,
                    "wall_s": result.wall_time_s,
                    "s_per_epoch": result.wall_time_s / max(result.epochs_run, 1),
                    "val_acc": result.history["val_accuracy"][-1],
                    "test_acc": m["accuracy"],
                    "test_f1": m["macro_f1"],
                    "recipe": ("augmented" if augment else "as published"),
                }
            )
            print(
                f"    test accuracy {m['accuracy']:.4f} in {result.wall_time_s:.1f} s over {result.epochs_run} epochs",
                flush=True,
            )
    return rows


def pipeline_rate(split: Split, *, cache: bool, prefetch: bool, batch: int, epochs: int) -> float:
    """Images/s the training pipeline (shuffle + normalise + augment) delivers alone."""
    ds = make_dataset(
        split.images, split.labels, num_classes=10, batch_size=batch, training=True, cache=cache, prefetch=prefetch
    )
    for _ in ds.take(2):  # warm up (traces the map function)
        pass
    start = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _ in ds:
            n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def step_rate(model_name: str, batch: int, steps: int) -> float:
    """Images/s of training steps on one batch held in memory (no input cost)."""
    keras.utils.set_random_seed(0)
    model, optimizer = build_model(model_name, total_steps=10_000)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    x = tf.random.uniform((batch, 28, 28, 1))
    y = tf.one_hot(tf.random.uniform((batch,), 0, 10, tf.int32), 10)
    data = tf.data.Dataset.from_tensors((x, y)).cache().repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def fit_rate(model_name: str, split: Split, *, cache: bool, prefetch: bool, batch: int) -> float:
    """Images/s of ``fit`` through the real pipeline variant (second epoch timed)."""
    keras.utils.set_random_seed(0)
    model, optimizer = build_model(model_name, total_steps=10_000)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    ds = make_dataset(
        split.images, split.labels, num_classes=10, batch_size=batch, training=True, cache=cache, prefetch=prefetch
    )
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    return len(split) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1,000 images (smoke run)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated zoo names")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"{os.cpu_count()} CPU cores, GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        flush=True,
    )
    dataset = load_dataset("sample")
    train_split = dataset.splits["train"]
    batch = 128

    if not args.skip_zoo:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        print("\n== zoo on the bundled sample (7,000 train / 1,000 validation / 2,000 test)", flush=True)
        rows = bench_zoo(dataset, models, args.quick, args.epochs)
        print()
        print("| model | params | recipe | epochs | wall time (s) | s / epoch | val acc | test acc | test macro-F1 |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| `{r['model']}` | {r['params']:,} | {r['recipe']} | {r['epochs']} | {r['wall_s']:.1f} | "
                f"{r['s_per_epoch']:.2f} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | {r['test_f1']:.4f} |"
            )

    if not args.skip_pipeline:
        epochs = 1 if args.quick else 3
        steps = 10 if args.quick else 40
        print("\n== input pipeline vs training step (cnn, batch 128, training split with augmentation)", flush=True)
        step = step_rate("cnn", batch, steps)
        print(f"cnn training step alone (batch in memory): {step:,.0f} images/s\n")
        print("| pipeline variant | pipeline alone (img/s) | pipeline / step | fit through it (img/s) | fit / step |")
        print("|---|---:|---:|---:|---:|")
        for cache, prefetch in ((True, True), (True, False), (False, True), (False, False)):
            rate = pipeline_rate(train_split, cache=cache, prefetch=prefetch, batch=batch, epochs=epochs)
            fit = fit_rate("cnn", train_split, cache=cache, prefetch=prefetch, batch=batch)
            label = f"cache {'on' if cache else 'off'}, prefetch {'on' if prefetch else 'off'}"
            print(f"| {label} | {rate:,.0f} | {rate / step:.1f}x | {fit:,.0f} | {fit / step:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
