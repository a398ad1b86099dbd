"""Frozen, validated settings for training and scoring.

Each dataclass validates itself once, in ``__post_init__``, and raises a ``ValueError``
whose message names the offending field, e.g. ``"batch_size must be > 0, got -3"``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable

from mnist_batch.constants import AUTO_RUNTIME, DEFAULT_MAX_PIXELS, FAST_RUNTIME, IMAGE_EXTENSIONS, RUNTIME_CHOICES


def require(condition: bool, field: str, message: str, value: object) -> None:
    """Raises ``ValueError(f"{field} {message}, got {value!r}")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{field} {message}, got {value!r}")


def name_flags(message: str, flags: Iterable[str]) -> str:
    """A settings error as the user typed it: a field named in ``message`` becomes its flag.

    ``run_date must be YYYY-MM-DD`` -> ``--run-date must be YYYY-MM-DD`` when ``--run-date`` is
    among ``flags``. Field names with an underscore are replaced wherever they stand; a
    one-word field (``layout``) only where the message starts with it (a plain word elsewhere).
    """
    for flag in sorted((f for f in flags if f.startswith("--")), key=len, reverse=True):
        field = flag[2:].replace("-", "_")
        if "_" in field:
            message = re.sub(rf"(?<![\w-]){re.escape(field)}\b", flag, message)
        elif re.match(rf"{re.escape(field)}\b", message):
            message = flag + message[len(field) :]
    return message


# --- training settings (TrainConfig) -------------------------------------------------------

TRAIN_STRATEGIES = ("auto", "default", "one-device", "mirrored", "multi-worker")
"""Values of ``TrainConfig.strategy`` (see :mod:`mnist_batch.training.strategy`)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; validated once, here.

    Attributes:
      dataset: data set spec, e.g. ``"sample"`` or ``"idx:/data/mnist"``.
      model: zoo name (see :data:`mnist_batch.training.zoo.MODEL_NAMES`).
      epochs: maximum number of epochs (early stopping may end the run sooner).
      batch_size: examples per replica per step; the global batch is this x replicas.
      learning_rate: overrides the model's default optimiser learning rate when set.
      strategy: one of :data:`TRAIN_STRATEGIES`.
      allow_cpu: let ``mirrored`` / ``one-device`` run on CPU when no GPU is present.
      mixed_precision: ``mixed_float16`` on GPU, ``mixed_bfloat16`` on a CPU with bfloat16
        instructions; elsewhere warns and trains in float32. The export is float32.
      augment: random shifts / rotations / zooms on the training split.
      flip: with ``augment``, also mirror half of the training images left-right: for
        mirror-symmetric classes such as Fashion-MNIST's, never for digits.
      rotation: with ``augment``, largest random rotation in degrees, in [0, 45].
      zoom: with ``augment``, largest relative zoom, in [0, 0.5).
      label_smoothing: label smoothing of the cross-entropy loss, in [0, 1).
      not_digit: generated non-digits added to the training split as one extra class, per
        training image (outlier exposure, :mod:`mnist_batch.synthetic`), in [0, 1]; 0 trains
        the plain C-class model, with no not-digit check.
      damage: with ``augment``, the share of training images damaged per batch (noise, blur,
        thin or thick strokes, low contrast), keeping their label, in [0, 1].
      patience: early-stopping patience in epochs on validation accuracy; 0 disables it.
      seed: seed of weights, shuffling and augmentation.
      limit: use at most this many examples of each split (smoke runs); None for all.
      cache_dir: file cache for tf.data instead of memory; None caches in memory.
      run_dir: checkpoints, backup (resume), CSV history, plots; None trains without one.
      export: path of the ``.keras`` file to export (with its model card); None skips export.
      export_runtimes: runtime artifacts made beside the export and recorded in its card, each
        measured against Keras on the test split (default: the fast runtime, ``litert``).
      tensorboard: write TensorBoard logs to ``run_dir/tensorboard``.
      verbose: Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch,
        ``None`` picks 1 on a terminal and 2 otherwise.
    """

    dataset: str = "sample"
    model: str = "cnn"
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float | None = None
    strategy: str = "auto"
    allow_cpu: bool = False
    mixed_precision: bool = False
    augment: bool = True
    flip: bool = False
    rotation: float = 10.0  # the defaults of training.augment.AugmentParams (not imported: it needs TF)
    zoom: float = 0.10
    label_smoothing: float = 0.0
    not_digit: float = 0.05
    damage: float = 0.10
    patience: int = 0
    seed: int = 42
    limit: int | None = None
    cache_dir: str | None = None
    run_dir: str | None = None
    export: str | None = None
    export_runtimes: tuple[str, ...] = (FAST_RUNTIME,)
    tensorboard: bool = False
    verbose: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.dataset), "dataset", "must not be empty", self.dataset)
        require(bool(self.model), "model", "must not be empty", self.model)
        require(isinstance(self.epochs, int) and self.epochs > 0, "epochs", "must be > 0", self.epochs)
        require(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size", "must be > 0", self.batch_size)
        if self.learning_rate is not None:
            require(
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                "learning_rate",
                "must be > 0",
                self.learning_rate,
            )
        require(self.strategy in TRAIN_STRATEGIES, "strategy", f"must be one of {TRAIN_STRATEGIES}", self.strategy)
        if self.flip:
            require(self.augment, "flip", "needs augment (it is part of the augmentation)", self.flip)
        require(0.0 <= self.rotation <= 45.0, "rotation", "must be in [0, 45] degrees", self.rotation)
        require(0.0 <= self.zoom < 0.5, "zoom", "must be in [0, 0.5)", self.zoom)
        require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)", self.label_smoothing)
        require(0.0 <= self.not_digit <= 1.0, "not_digit", "must be in [0, 1]", self.not_digit)
        require(0.0 <= self.damage <= 1.0, "damage", "must be in [0, 1]", self.damage)
        require(isinstance(self.patience, int) and self.patience >= 0, "patience", "must be >= 0", self.patience)
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", "must be >= 0", self.seed)
        if self.limit is not None:
            require(isinstance(self.limit, int) and self.limit > 0, "limit", "must be > 0", self.limit)
        if self.export is not None:
            require(str(self.export).endswith(".keras"), "export", "must end with .keras", self.export)
        require(
            isinstance(self.export_runtimes, tuple) and all(r in (FAST_RUNTIME,) for r in self.export_runtimes),
            "export_runtimes",
            f"must name artifact runtimes ({FAST_RUNTIME})",
            self.export_runtimes,
        )
        if self.tensorboard:
            require(self.run_dir is not None, "tensorboard", "needs run_dir", self.tensorboard)
        require(self.verbose in (None, 0, 1, 2), "verbose", "must be 0, 1, 2 or None", self.verbose)


# --- scoring settings (ScoreConfig) --------------------------------------------------------

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
"""Per-file read limit (64 MiB): far above any scan (an A4 page at 600 dpi as PNG is a few MB), far
below what would hurt a worker. Larger files are read errors, refused from their size before reading."""

DEFAULT_MAX_BATCH_SIZE = 256
"""Files per group, and so images per model call, chosen by measurement on 2 cores (docs/benchmarks.md, Scoring): the model's
throughput is flat from 256 up, and smaller batches keep memory and latency low."""


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Everything one scoring run needs; validated once, here.

    Attributes:
      model: path of the exported ``.keras`` model (its ``.card.json`` beside it).
      inputs: folders, globs (``**`` recursive), image files, or ``@list.txt`` files of those.
      output: output folder (local or any Beam filesystem).
      labels_csv: optional ``path,label`` CSV of true labels (else the parent folder names them).
      extensions: image file extensions (lower case, no dot); other names are skipped and counted.
      review_threshold: predictions with a lower confidence are flagged ``low_confidence``, in [0, 1];
        None: the model card's (chosen on validation data at export), or 0.9 for a card without one
        (:func:`mnist_batch.review.review_threshold_for`; a launch resolves it once, from the card).
      max_batch_size: files per group, and so images per model call.
      max_error_rate: the run fails (non-zero exit, outputs still written) when
        errors / matched exceeds this; None = only fail when every file failed.
      max_pixels: decompression-bomb guard: larger images are errors, not decoded.
      max_file_bytes: files larger than this are read errors (checked from the file's size
        before reading, and no more than this plus one byte is ever read).
      run_id: written to every prediction row; None = a fresh one per run.
      progress: print a progress line from local workers.
      overwrite: replace the outputs of an earlier run in ``output`` (else refuse to mix runs).
      runtime: what runs the model: ``auto`` (the card's fast runtime when its recorded agreement
        with Keras is at least 99.9 %, else Keras), ``keras``, or ``litert``.
      not_digit_threshold: overrides the card's not-digit threshold, in (0, 1]; None: the card's.
    """

    model: str
    inputs: tuple[str, ...]
    output: str
    labels_csv: str | None = None
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    review_threshold: float | None = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_error_rate: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    run_id: str | None = None
    progress: bool = False
    overwrite: bool = False
    runtime: str = AUTO_RUNTIME
    not_digit_threshold: float | None = None

    def __post_init__(self) -> None:
        require(bool(self.model), "model", "must not be empty", self.model)
        require(str(self.model).endswith(".keras"), "model", "must be a .keras file", self.model)
        require(
            self.runtime in RUNTIME_CHOICES, "runtime", f"must be one of {', '.join(RUNTIME_CHOICES)}", self.runtime
        )
        require(
            isinstance(self.inputs, tuple) and len(self.inputs) > 0, "inputs", "must name at least one", self.inputs
        )
        require(all(isinstance(i, str) and i for i in self.inputs), "inputs", "must be non-empty strings", self.inputs)
        require(bool(self.output), "output", "must not be empty", self.output)
        require(
            isinstance(self.extensions, tuple)
            and len(self.extensions) > 0
            and all(e and e == e.lower() and not e.startswith(".") for e in self.extensions),
            "extensions",
            "must be lower-case names without a dot",
            self.extensions,
        )
        if self.review_threshold is not None:
            require(
                math.isfinite(self.review_threshold) and 0.0 <= self.review_threshold <= 1.0,
                "review_threshold",
                "must be in [0, 1]",
                self.review_threshold,
            )
        if self.not_digit_threshold is not None:
            require(
                math.isfinite(self.not_digit_threshold) and 0.0 < self.not_digit_threshold <= 1.0,
                "not_digit_threshold",
                "must be in (0, 1]",
                self.not_digit_threshold,
            )
        require(
            isinstance(self.max_batch_size, int) and self.max_batch_size > 0,
            "max_batch_size",
            "must be > 0",
            self.max_batch_size,
        )
        if self.max_error_rate is not None:
            require(
                math.isfinite(self.max_error_rate) and 0.0 <= self.max_error_rate <= 1.0,
                "max_error_rate",
                "must be in [0, 1]",
                self.max_error_rate,
            )
        require(isinstance(self.max_pixels, int) and self.max_pixels > 0, "max_pixels", "must be > 0", self.max_pixels)
        require(
            isinstance(self.max_file_bytes, int) and self.max_file_bytes > 0,
            "max_file_bytes",
            "must be > 0",
            self.max_file_bytes,
        )
        if self.run_id is not None:
            require(bool(self.run_id), "run_id", "must not be empty", self.run_id)
