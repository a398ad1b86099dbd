"""``mnist-batch train``: train a model zoo network and export it with a model card."""

from __future__ import annotations

import argparse
import warnings

from mnist_batch.cli.common import HelpFormatter, add_verbosity, progress, slow_step
from mnist_batch.config import TRAIN_STRATEGIES, TrainConfig, name_flags
from mnist_batch.constants import FAST_RUNTIME
from mnist_batch.errors import MnistBatchError

# The zoo names are repeated here so `--help` does not import TensorFlow;
# tests/test_training_cli.py checks they match mnist_batch.training.zoo.MODEL_NAMES.
MODEL_CHOICES = ("cnn", "cnn-keras", "mlp-sigmoid-15", "mlp-512", "mlp-300-100", "mlp-deep-20", "mlp-1000x2-dropout")

EPILOG = """Outputs:
  --export PATH.keras   the model (loads with keras safe_mode=True) and PATH.card.json beside it
                        (model_id = sha256 of the file, test accuracy / loss / macro-F1, versions)
  --run-dir DIR         DIR/checkpoints/best.keras, DIR/history.csv, DIR/learning_curve.png,
                        DIR/backup/ (repeat the same command after a crash to resume), DIR/tensorboard/

Multi-worker (one command per worker, same arguments):
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
    mnist-batch train --strategy multi-worker --run-dir runs/mw --export models/cnn.keras

Exit codes: 0 trained; 2 bad option, data set or model; 130 interrupted (repeat with the same
--run-dir to resume).
"""


class TrainArgumentError(MnistBatchError, ValueError):
    """An invalid training option or combination."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and export it with a model card",
        description="Train a model zoo network on a data set and export it.\n\nExamples:\n"
        "  mnist-batch train --export models/cnn.keras\n"
        "  mnist-batch train --dataset sample --model cnn-keras --epochs 5 --run-dir runs/cnn-keras "
        "--export models/cnn-keras.keras\n"
        "  mnist-batch train --dataset idx:/usr/share/datasets/fashion-mnist --model cnn --export models/fashion.keras",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    d = TrainConfig()
    p.add_argument(
        "--dataset", default=d.dataset, help="sample | npz:PATH | idx:DIR | fashion-mnist[:DIR] | folder:DIR | mnist"
    )
    p.add_argument("--model", default=d.model, choices=MODEL_CHOICES, help="model zoo network")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per-replica batch size")
    p.add_argument("--learning-rate", type=float, default=None, help="override the model's default (peak) rate")
    p.add_argument("--strategy", default=d.strategy, choices=TRAIN_STRATEGIES, help="tf.distribute strategy")
    p.add_argument("--allow-cpu", action="store_true", help="let one-device / mirrored run on the CPU")
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 on GPU, mixed_bfloat16 on CPUs with AVX512-BF16/AMX; else float32",
    )
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random shift/rotation/zoom")
    p.add_argument(
        "--flip",
        action="store_true",
        help="also mirror half of the training images left-right (Fashion-MNIST; never for digits)",
    )
    p.add_argument("--rotation", type=float, default=d.rotation, metavar="DEG", help="largest random rotation")
    p.add_argument("--zoom", type=float, default=d.zoom, help="largest random relative zoom")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="e.g. 0.1")
    p.add_argument(
        "--not-digit",
        type=float,
        default=d.not_digit,
        metavar="SHARE",
        help="generated non-digits per training image, learnt as an extra 'not a digit' class (0: none)",
    )
    p.add_argument(
        "--damage",
        type=float,
        default=d.damage,
        metavar="SHARE",
        help="share of training images damaged per batch (noise, blur, stroke width, contrast), label kept",
    )
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping on val accuracy; 0 = off")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--limit", type=int, default=None, help="use at most N examples of each split (smoke runs)")
    p.add_argument("--cache-dir", default=None, help="tf.data file cache instead of memory")
    p.add_argument("--run-dir", default=None, help="checkpoints, history, curves; resume by repeating the command")
    p.add_argument("--tensorboard", action="store_true", help="TensorBoard logs in RUN_DIR/tensorboard")
    p.add_argument("--export", default=None, metavar="PATH.keras", help="write the model and its model card")
    p.add_argument(
        "--export-runtime",
        choices=(FAST_RUNTIME, "none"),
        default=FAST_RUNTIME,
        help="with --export, also write the fast runtime's file beside the model (PATH.tflite: LiteRT, int8 "
        "weights), measured against Keras on the test split and recorded in the card; none: only the .keras",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "epoch", "none"),
        default="auto",
        help="Keras progress bar, one line per epoch, or nothing (auto: bar on a terminal)",
    )
    add_verbosity(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Builds the :class:`TrainConfig`; invalid values raise a one-line CLI error naming the option."""
    try:
        return TrainConfig(
            dataset=args.dataset,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            strategy=args.strategy,
            allow_cpu=args.allow_cpu,
            mixed_precision=args.mixed_precision,
            augment=args.augment,
            flip=args.flip,
            rotation=args.rotation,
            zoom=args.zoom,
            label_smoothing=args.label_smoothing,
            not_digit=args.not_digit,
            damage=args.damage,
            patience=args.patience,
            seed=args.seed,
            limit=args.limit,
            cache_dir=args.cache_dir,
            run_dir=args.run_dir,
            export=args.export,
            export_runtimes=() if args.export_runtime == "none" else (args.export_runtime,),
            tensorboard=args.tensorboard,
            verbose={"auto": None, "bar": 1, "epoch": 2, "none": 0}[args.progress],
        )
    except ValueError as exc:
        raise TrainArgumentError(name_flags(str(exc), [f"--{k.replace('_', '-')}" for k in vars(args)])) from exc


def run(args: argparse.Namespace) -> int:
    from mnist_batch.models.errors import require_tensorflow

    config = config_from_args(args)
    require_tensorflow("train")
    with slow_step(args, "loading TensorFlow (10-30 s on a small CPU machine) ...") as step:
        from mnist_batch.training.train import train
    if step["shown"]:
        progress(
            args,
            f"TensorFlow loaded in {step['seconds']:.1f} s; loading {config.dataset}, "
            f"building {config.model} and its input pipeline ...",
        )

    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        try:
            result = train(config)
        except ValueError as exc:
            if isinstance(exc, MnistBatchError):
                raise
            raise TrainArgumentError(str(exc)) from exc
    if not result.is_chief:
        print(f"worker done: {result.epochs_run} epochs in {result.wall_time_s:.1f} s (the chief writes the outputs)")
        return 0
    resumed = f", resumed after epoch {result.initial_epoch}" if result.initial_epoch else ""
    print(
        f"trained {config.model}: {result.epochs_run} epochs in {result.wall_time_s:.1f} s{resumed} "
        f"({result.strategy}, {result.replicas} replica(s))"
    )
    if result.run_dir is not None:
        rd = result.run_dir
        print(f"run dir:        {rd.root}")
        if rd.best_checkpoint.is_file():
            print(f"  best checkpoint: {rd.best_checkpoint}")
        print(f"  history:         {rd.history}")
        if rd.learning_curve.is_file():
            print(f"  learning curve:  {rd.learning_curve}")
        if config.tensorboard:
            print(f"  tensorboard:     {rd.tensorboard}")
    if result.card is not None:
        m = result.card.test_metrics
        print(f"model:          {result.export_path}")
        print(f"model card:     {result.export_path.removesuffix('.keras')}.card.json")
        print(f"model_id:       {result.card.model_id}")
        if m:
            print(
                f"test ({m['examples']:,} images): accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}  "
                f"macro-F1 {m['macro_f1']:.4f}"
            )
        for line in trust_lines(result.card):
            print(line)
        from mnist_batch.models.artifacts import describe_artifact

        for name, entry in result.card.runtimes.items():
            print(describe_artifact(name, entry, result.export_path))
    else:
        print("no --export given: the model was not saved (add --export models/NAME.keras)")
    return 0


def trust_lines(card) -> list[str]:
    """What the card's not-digit and review thresholds are, and what they cost on validation data."""
    nd, rv = card.not_digit, card.review
    lines = []
    if nd:
        lines.append(
            f"not-digit threshold {nd['threshold']:g}: flags {nd['validation_digits_flagged']:.1%} of validation "
            f"digits, {nd['validation_negatives_flagged']:.1%} of held-out non-digits"
        )
    if rv:
        worst = max(rv["validation_damaged"].items(), key=lambda kv: kv[1]["wrong_unflagged"], default=None)
        said = f"; worst damaged set {worst[0]}: {worst[1]['wrong_unflagged']:.1%} wrong and unflagged" if worst else ""
        lines.append(
            f"review threshold {rv['threshold']:g}"
            + ("" if rv["met"] else f" (no threshold up to 0.95 kept damaged digits within {rv['budget']:.0%})")
            + f": flags {rv['validation_clean_flagged']:.1%} of validation digits{said}"
        )
    return lines
