"""Model bytes: read once, checked as a Keras 3 archive, hashed, and loaded from those same bytes.

"Hash what you load, load what you hashed": :func:`load_checked_model` reads the file once,
refuses bytes whose sha256 is not the expected ``model_id``, and loads the model from those
bytes through a private temporary folder (removed right after), so nothing another process
changes in between is ever loaded. Local paths are read with ``open``; remote URIs (``gs://``,
``s3://``) through Beam's filesystems, imported only for them (training never imports Beam).
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from typing import Any

from mnist_batch.files import FileTooLargeError, NotRegularFileError, is_remote, local_path, read_at_most, read_local
from mnist_batch.model_card import CARD_SUFFIX, ModelCard, ModelCardError, bytes_sha256, parse_card, read_card
from mnist_batch.models.errors import ModelChangedError, ModelError, ModelFileError, one_line, require_tensorflow

KERAS_ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")
"""What every Keras 3 ``.keras`` zip holds: the architecture and the weights."""

_BYTES_CACHE: dict[str, Any] = {}
"""Models loaded in this process from bytes, by the sha256 of those bytes: the launcher's check and an
in-process (DirectRunner) worker share one load, and a cached model is always the one those bytes hold."""


def _open_remote(uri: str):
    from apache_beam.io.filesystems import FileSystems  # only for gs://, s3://, ...

    return FileSystems.open(uri)


MAX_MODEL_BYTES = 2 * 1024**3
"""Model files larger than this (2 GiB; the default ``cnn`` is 1.3 MB) are refused before reading."""


def read_model_bytes(uri: str, max_bytes: int = MAX_MODEL_BYTES) -> bytes:
    """The model file's bytes, read once (local path or any Beam filesystem).

    A local path is read like an input image (:func:`mnist_batch.files.read_local`): only a
    regular file (a link to ``/dev/zero`` or a FIFO is refused, never read), at most ``max_bytes``.

    Raises:
      ModelError: no such file, not a regular file, too large, or unreadable.
    """
    try:
        if not is_remote(uri):
            return read_local(local_path(uri), max_bytes)
        with _open_remote(uri) as f:
            return read_at_most(f, max_bytes)
    except FileNotFoundError as exc:
        raise ModelError(f"{uri}: no such model file") from exc
    except (NotRegularFileError, FileTooLargeError) as exc:
        raise ModelError(f"{uri}: cannot use this model file: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"{uri}: cannot read the model file ({type(exc).__name__}: {one_line(exc)})") from exc


def read_model_card(uri: str) -> ModelCard:
    """The card beside the model (``NAME.card.json``), without hashing the model file again.

    Raises:
      ModelError: no card, unreadable or invalid card.
    """
    try:
        if not is_remote(uri):
            return read_card(local_path(uri), verify_id=False)
        card_uri = uri.removesuffix(".keras") + CARD_SUFFIX
        try:
            with _open_remote(card_uri) as f:
                text = f.read().decode("utf-8")
        except Exception as exc:  # its message too: a store that is away names its endpoint there
            raise ModelCardError(
                f"{card_uri}: model card not found or unreadable ({type(exc).__name__}: {one_line(exc)[:300]})"
            ) from exc
        return parse_card(text, where=card_uri)
    except ModelCardError as exc:
        raise ModelError(str(exc)) from exc


def check_archive(data: bytes, uri: str) -> None:
    """Refuses bytes that are not a complete Keras 3 ``.keras`` zip, naming what is wrong.

    Raises:
      ModelFileError: not a zip (or truncated: the zip directory is at the end), a damaged
        member (CRC mismatch), or no ``config.json`` / ``model.weights.h5`` in it.
    """
    prefix = f"{uri}: cannot load the Keras model:"
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelFileError(
            f"{prefix} not a complete .keras zip archive ({len(data):,} bytes; truncated, or not a Keras 3 export)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{prefix} damaged zip archive ({one_line(exc)})") from exc
    if damaged is not None:
        raise ModelFileError(f"{prefix} damaged archive member {damaged} (CRC mismatch)")
    missing = [name for name in KERAS_ARCHIVE_MEMBERS if name not in names]
    if missing:
        raise ModelFileError(f"{prefix} the archive has no {' or '.join(missing)} (incomplete export?)")


def load_model_bytes(data: bytes, sha256: str, uri: str) -> Any:
    """Loads the model these exact bytes hold (``safe_mode=True``, not compiled); cached by ``sha256``.

    Keras loads ``.keras`` files by path, so the bytes are written to a private temporary
    folder (mode 0700, removed right after): nothing another process changes is ever loaded.

    Raises:
      ModelFileError: the bytes are not a loadable Keras 3 archive (:func:`check_archive`), or
        Keras refuses them.
    """
    if sha256 in _BYTES_CACHE:
        return _BYTES_CACHE[sha256]
    check_archive(data, uri)
    require_tensorflow(f"loading the Keras model {uri}")
    import keras

    with tempfile.TemporaryDirectory(prefix="mnist_batch_model_") as directory:
        path = os.path.join(directory, "model.keras")
        with open(path, "xb") as f:
            f.write(data)
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise ModelFileError(f"{uri}: cannot load the Keras model: {type(exc).__name__}: {one_line(exc)}") from exc
    _BYTES_CACHE.clear()  # keep at most one model
    _BYTES_CACHE[sha256] = model
    return model


def read_checked_bytes(uri: str, expected_id: str | None = None) -> tuple[bytes, str]:
    """The file's bytes, read once, and their sha256; refused unless it is ``expected_id`` (when given).

    Raises:
      ModelChangedError: the bytes' sha256 is not ``expected_id``.
      ModelError: unreadable file.
    """
    data = read_model_bytes(uri)
    actual = bytes_sha256(data)
    if expected_id is not None and actual != expected_id:
        raise ModelChangedError(uri, actual, expected_id)
    return data, actual


def load_checked_model(uri: str, expected_id: str | None = None) -> tuple[Any, str]:
    """Reads the model once, hashes those bytes, refuses them unless their sha256 is ``expected_id``,
    and loads the model from the same bytes.

    Returns:
      ``(model, sha256 of the bytes loaded)``.

    Raises:
      ModelChangedError: the bytes' sha256 is not ``expected_id``.
      ModelFileError, ModelError: unreadable or damaged file.
    """
    data, actual = read_checked_bytes(uri, expected_id)
    return load_model_bytes(data, actual, uri), actual


def load_keras_model(path: str | os.PathLike) -> Any:
    """Loads a local ``.keras`` file (``safe_mode=True``, not compiled), through :func:`load_checked_model`."""
    return load_checked_model(os.fspath(path))[0]
