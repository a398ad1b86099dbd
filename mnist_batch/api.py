"""The public Python API: score digits from your own code, as the command line does.

    from mnist_batch import api

    predictor = api.load_predictor("out/demo/models/cnn.keras")     # checked against its card
    rows = predictor.predict(["scan.png", png_bytes, pil_image, uint8_array])
    rows[0]["predicted_class"], rows[0]["confidence"], rows[0]["low_confidence"]

    summary = api.score("scans/", "out/scored")                      # the same job as `mnist-batch score`

    with beam.Pipeline() as p:                                       # inside your own Beam pipeline
        out = p | beam.Create(paths) | api.ScoreDigits("out/demo/models/cnn.keras")
        out["predictions"] | ...; out["errors"] | ...

Rows are dicts with the predictions table's columns (:data:`mnist_batch.tables.PREDICTIONS_SCHEMA`;
errors: :data:`~mnist_batch.tables.ERRORS_SCHEMA`). Quiet by default, like the CLI: importing this
module sets TensorFlow's and Beam's loggers to warnings where the caller left them unset, and drops
their known start-up chatter (:mod:`mnist_batch.cli.logs`). Errors
are :class:`mnist_batch.errors.MnistBatchError` subclasses with the CLI's one-line messages.
``ScoreDigits`` is imported from :mod:`mnist_batch.scoring.composite` on first use (it needs Beam);
``load_predictor`` does not import Beam.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_batch.constants import AUTO_RUNTIME
from mnist_batch.decoding import ImageDecodeError, decode_image
from mnist_batch.errors import MnistBatchError
from mnist_batch.preprocess import MnistImage, to_mnist
from mnist_batch.review import check_review_threshold, review_threshold_for
from mnist_batch.tables import ERRORS_SCHEMA, prediction_columns
from mnist_batch.trust import threshold_for

if TYPE_CHECKING:  # imported on first use (module __getattr__ below): it needs Beam
    from mnist_batch.scoring.composite import ScoreDigits

__all__ = ["DigitPredictor", "ImageInput", "ScoreDigits", "load_predictor", "quiet", "score"]

ImageInput = Any
"""A path (``str`` or ``os.PathLike``, local or any Beam filesystem), encoded bytes, a PIL image, or a
uint8/float numpy array (H x W grayscale, or H x W x 3/4 colour) of any size."""

_QUIET = {"on": True, "done": False}


def quiet(on: bool = True) -> None:
    """``quiet(False)``: the API adds no more log filters from now on (those added on import stay;
    set the libraries' logger levels yourself to override them)."""
    _QUIET["on"] = on


def _quiet_libraries() -> None:
    import logging

    from mnist_batch.cli.logs import LIBRARY_LOGGERS, NoiseFilter

    if not _QUIET["on"] or _QUIET["done"]:
        return
    _QUIET["done"] = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # never override what the caller configured
            logger.setLevel(logging.WARNING)
    # The known harmless messages (Beam's import chatter on the root logger, its warnings about this
    # package's DoFns): dropped where a process without logging set up prints them (logging's
    # last-resort handler) and on the root logger; a caller's own handlers are theirs.
    logging.getLogger().addFilter(NoiseFilter())
    if logging.lastResort is not None:
        logging.lastResort.addFilter(NoiseFilter())
    _filter_root_handlers()


def _filter_root_handlers() -> None:
    """The noise filter on the root logger's handlers: Beam's first ``logging.warning`` on import
    makes one (``basicConfig``), which then prints what its child loggers propagate."""
    import logging

    from mnist_batch.cli.logs import NoiseFilter

    if not _QUIET["on"]:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, NoiseFilter) for f in handler.filters):
            handler.addFilter(NoiseFilter())


@dataclasses.dataclass
class DigitPredictor:
    """A checked model on its runtime; :meth:`predict` gives each image its predictions-table row.

    Attributes:
      model: the ``.keras`` path; runtime, runtime_uri, model_id, runtime_model_id: what scores
        (``runtime_model_id`` is the sha256 of the file that scores, ``model_id`` the ``.keras`` file's).
      class_names: the card's.
      review_threshold: rows with confidence below it are ``low_confidence``.
      not_digit_threshold: rows whose not-digit score is at least this are ``not_digit`` (the card's
        threshold unless given; None for a model without the check: the two columns are null).
    """

    model: str
    runtime: str
    runtime_uri: str
    model_id: str
    runtime_model_id: str
    class_names: tuple[str, ...]
    review_threshold: float
    not_digit_threshold: float | None
    _predictor: Any = dataclasses.field(repr=False)

    def predict(self, images: Iterable[ImageInput], *, on_error: str = "raise") -> list[dict[str, Any]]:
        """One row per image, in order: ``path`` (None for bytes, arrays and PIL images),
        ``predicted_label``, ``predicted_class``, ``confidence``, ``probabilities``, ``low_confidence``,
        ``blank``, ``model_id``, ``runtime_model_id``, ``run_id`` (``api``), ``scored_at``...

        Args:
          images: paths, bytes, PIL images or arrays (:data:`ImageInput`), mixed as you like.
          on_error: ``raise`` (default): an image that cannot be read or decoded raises
            :class:`ImageError` naming it; ``row``: it gets an errors-table row in its place
            (``path``, ``stage``, ``error_type``, ``message``, ``run_id``, ``model_id``).

        Raises:
          ImageError: with ``on_error="raise"``, the first image that cannot be used.
        """
        if on_error not in ("raise", "row"):
            raise ValueError(f"on_error must be 'raise' or 'row', got {on_error!r}")
        images = list(images)
        prepared: list[tuple[int, str | None, MnistImage]] = []
        rows: list[dict[str, Any] | None] = [None] * len(images)
        for i, image in enumerate(images):
            name = _name(image)
            try:
                prepared.append((i, name, _to_mnist(image)))
            except ImageError as exc:
                if on_error == "raise":
                    raise ImageError(f"image {i} ({name or type(image).__name__}): {exc}") from exc
                values = (name or f"<image {i}>", exc.stage, exc.error_type, str(exc), "api", self.model_id)
                rows[i] = dict(zip(ERRORS_SCHEMA.names, values, strict=True))
        if prepared:
            probabilities = self._predictor(np.stack([m.pixels for _, _, m in prepared]))
            columns = prediction_columns(
                [name for _, name, _ in prepared], [None] * len(prepared), [m.blank for _, _, m in prepared],
                probabilities, class_names=self.class_names, model_id=self.model_id, run_id="api",
                review_threshold=self.review_threshold, scored_at=datetime.datetime.now(datetime.UTC),
                runtime_model_id=self.runtime_model_id, not_digit_threshold=self.not_digit_threshold,
            )  # fmt: skip
            for (i, _, _), row in zip(prepared, _table_rows(columns), strict=True):
                rows[i] = row
        return rows  # type: ignore[return-value]


class ImageError(MnistBatchError, ValueError):
    """An image that cannot be read, decoded or normalised; ``stage`` is ``read``, ``decode`` or ``preprocess``."""

    def __init__(self, message: str, stage: str = "decode", error_type: str = "ImageDecodeError") -> None:
        super().__init__(message)
        self.stage, self.error_type = stage, error_type


def load_predictor(
    model: str | os.PathLike,
    runtime: str = AUTO_RUNTIME,
    *,
    review_threshold: float | None = None,
    not_digit_threshold: float | None = None,
):
    """The model at ``model`` (``.keras`` with its card beside it), checked as ``score`` checks it, on
    ``runtime`` (``auto``: the card's LiteRT file when its recorded agreement is >= 99.9 %), flagging
    ``low_confidence`` below the card's review threshold (or ``review_threshold``; 0.9 for a card
    without one) and ``not_digit`` at the card's threshold (or ``not_digit_threshold``) as ``score`` does.

    Raises:
      ModelError: no card, a file that does not match it, a missing or damaged runtime file, or a
        runtime that needs TensorFlow in a scoring-only install.
    """
    _quiet_libraries()
    from mnist_batch.models import Predictor, check_model, choose_runtime

    uri = os.fspath(model)
    card = check_model(uri, load=False)
    scorer = choose_runtime(uri, card, runtime)
    predictor = Predictor.load(scorer.uri, scorer.model_id, runtime=scorer.runtime)  # the checked bytes
    names = tuple(card.class_names)
    flag_at, _ = threshold_for(card.not_digit_check(), not_digit_threshold)
    review_at, _ = review_threshold_for(card.review_threshold(), check_review_threshold(review_threshold))
    return DigitPredictor(
        uri, scorer.runtime, scorer.uri, card.model_id, scorer.model_id, names, review_at, flag_at, predictor
    )


def score(input: str | Sequence[str], output: str, **options: Any) -> dict[str, Any]:
    """Runs the job ``mnist-batch score`` runs, on the engine it picks (``engine``: ``auto``, ``beam``,
    ``inprocess``; a local flat-layout run in this process without Beam, as the CLI's), and returns its
    summary (``summary.json``'s content; ``summary["engine"]`` says which ran).

    Args:
      input: a folder, glob or file (or several), local or any Beam filesystem.
      output: the output folder (or runs root with ``layout="runs"``).
      options: ``score``'s options by their long names, ``-`` as ``_``: ``model`` (required),
        ``layout``, ``incremental``, ``run_id``, ``overwrite``, ``runtime``, ``max_error_rate``, ...
        (``True`` passes a flag, ``False``/``None`` leaves it out, a list repeats it); ``beam_args``: a
        list of Beam options (``["--runner", "DataflowRunner", ...]``).

    Raises:
      MnistBatchError: what the CLI reports as exit 2 (an unknown option among them), with its message.
      RunFailedError: the job ran but failed its promise (exit 4: every file failed, nothing matched,
        ``max_error_rate`` exceeded); ``.summary`` holds the run's summary.
    """
    _quiet_libraries()  # before Beam's import, which logs
    from mnist_batch.cli import build_parser
    from mnist_batch.cli.score_cmd import execute
    from mnist_batch.scoring.options import option_strings, parse

    _filter_root_handlers()

    beam_args = list(options.pop("beam_args", None) or [])
    argv = ["score", *_flags("input", [input] if isinstance(input, str | os.PathLike) else list(input))]
    argv += _flags("output", output)
    for name, value in options.items():
        argv += _flags(name, value)
    unknown = [a for a in argv if a.startswith("--") and a not in option_strings()]
    if unknown:
        raise MnistBatchError(f"score(): unknown option {unknown[0][2:].replace('-', '_')!r}")
    args = build_parser().parse_args(argv)
    summary = execute(args, parse(args, beam_args), cli=False)  # the CLI's engine choice and launch
    if summary.get("exit_code"):
        raise RunFailedError(summary)
    return summary


class RunFailedError(MnistBatchError):
    """A scoring run that ended with a non-zero exit code; the run's summary is in ``.summary``."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__(f"{summary.get('failure') or 'the run failed'} (exit {summary.get('exit_code')})")
        self.summary = summary


def _flags(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, list | tuple):
        return [w for v in value for w in (flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v))]
    return [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]


def _name(image: ImageInput) -> str | None:
    return os.fspath(image) if isinstance(image, str | os.PathLike) else None


def _to_mnist(image: ImageInput) -> MnistImage:
    """Any :data:`ImageInput` -> the 28x28 MNIST-format image the model sees (scoring's preprocessing)."""
    try:
        return to_mnist(_grayscale(image))
    except ImageError:
        raise
    except ImageDecodeError as exc:
        raise ImageError(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise ImageError(str(exc), "preprocess", type(exc).__name__) from exc


def _grayscale(image: ImageInput) -> np.ndarray:
    if isinstance(image, str | os.PathLike):
        return decode_image(_read(os.fspath(image)))
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image))
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype.kind == "f":
            array = np.clip(np.rint(array * (255.0 if array.max(initial=0) <= 1.0 else 1.0)), 0, 255)
        array = array.astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            return decode_image(_png(array))
        if array.ndim != 2:
            raise ImageError(f"an array image must be H x W or H x W x 3/4, got shape {image.shape}", "preprocess")
        return array
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image: through the decoder (modes, alpha)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return decode_image(buffer.getvalue())
    raise ImageError(f"not an image input: {type(image).__name__} (a path, bytes, a PIL image or an array)")


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _read(path: str) -> bytes:
    from mnist_batch.files import DEFAULT_MAX_FILE_BYTES, is_remote, read_local

    try:
        if is_remote(path):
            from mnist_batch.runstore import fs  # the storage interface (S3 through its bounded client)

            return fs.read_at_most(path, DEFAULT_MAX_FILE_BYTES)
        return read_local(path, DEFAULT_MAX_FILE_BYTES)
    except FileNotFoundError as exc:
        raise ImageError("no such file", "read", type(exc).__name__) from exc
    except OSError as exc:
        raise ImageError(str(exc.strerror or exc), "read", type(exc).__name__) from exc
    except MnistBatchError as exc:  # not a regular file, too large
        raise ImageError(str(exc), "read", type(exc).__name__) from exc


def _table_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    import pyarrow as pa

    return pa.table(columns).to_pylist()


_quiet_libraries()  # quiet by default, like the CLI: before the caller's first Beam or TensorFlow import


def __getattr__(name: str):
    if name == "ScoreDigits":  # needs Beam: imported on first use
        _quiet_libraries()
        from mnist_batch.scoring.composite import ScoreDigits

        _filter_root_handlers()
        return ScoreDigits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
