"""Shapes, class names and output column names shared by every side of the package.

Standard library only: this module is imported by the training side, the Beam
scoring side and the data layer alike.
"""

IMAGE_SIZE = 28
"""Height and width of an MNIST-format image, in pixels."""

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
"""Shape of one stored image (uint8, white ink on black)."""

MODEL_INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
"""Shape of one model input (float32 in [0, 1], channels last)."""

NUM_CLASSES = 10
"""Number of classes of the digit task."""

MNIST_CLASS_NAMES = tuple(str(d) for d in range(NUM_CLASSES))
"""Class names of the digit task; index i is the digit i."""

SPLITS = ("train", "validation", "test")
"""Split names every loader uses. The test split is never used for training or model selection."""

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp")
"""File extensions (lower case, no dot) treated as images when reading folders (``score --extensions``' default)."""

DEFAULT_MAX_PIXELS = 40_000_000
"""Images with more pixels than this are refused, not decoded (decompression-bomb guard; ``--max-pixels``)."""

KERAS_RUNTIME = "keras"
"""The ``.keras`` model run by TensorFlow (``--runtime keras``)."""

FAST_RUNTIME = "litert"
"""The fast CPU runtime, chosen by measurement (docs/benchmarks.md): a LiteRT file made at export."""

AUTO_RUNTIME = "auto"
"""``--runtime auto`` (the default): the fast runtime when the card records its agreement with Keras
at or above :data:`mnist_batch.models.runtimes.MIN_AGREEMENT`, else Keras."""

RUNTIME_CHOICES = (AUTO_RUNTIME, KERAS_RUNTIME, FAST_RUNTIME)
"""What ``--runtime`` takes on ``score``, ``evaluate`` and ``predict``."""

PREPROCESS_VERSION = "1"
"""Version of the normalisation in :mod:`mnist_batch.preprocess`; recorded in model cards."""

# Output column names (Parquet). Declared here so both sides spell them the same.
COL_PATH = "path"
COL_TRUE_LABEL = "true_label"
COL_PREDICTED_LABEL = "predicted_label"
COL_CONFIDENCE = "confidence"
COL_PROBABILITIES = "probabilities"
COL_LOW_CONFIDENCE = "low_confidence"
COL_BLANK = "blank"
COL_MODEL_ID = "model_id"
COL_RUN_ID = "run_id"
COL_SCORED_AT = "scored_at"
COL_STAGE = "stage"
COL_ERROR_TYPE = "error_type"
COL_MESSAGE = "message"
