"""Inference runtimes: the ``.keras`` model itself, or a faster file converted from it at export.

A runtime turns model bytes into a function float32 [B, 28, 28, 1] in [0, 1] -> float32 [B, C]
(:class:`~mnist_batch.models.Predictor` wraps it). ``keras`` is the exported model run by
TensorFlow; every other runtime is an *artifact*: a file made from the ``.keras`` model once, at
export (``train --export``, ``mnist-batch export``), stored beside it and recorded in the model
card with its sha256 and its measured agreement with Keras on the held-out split
(:mod:`mnist_batch.models.artifacts`).

The fast runtime was chosen by measurement on the default ``cnn`` (docs/benchmarks.md, "Choosing
the CPU runtime"): LiteRT (``ai-edge-litert``) with int8 weights (dynamic-range quantisation,
activations stay float) ran 3.7x TensorFlow on 2 cores with the same argmax on every test image,
from one 0.3 MB file and a 22 MB wheel, and never imports TensorFlow.

Registry: :func:`get_runtime`, :data:`RUNTIMES` (name -> :class:`Runtime`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from mnist_batch.constants import FAST_RUNTIME, KERAS_RUNTIME, MODEL_INPUT_SHAPE
from mnist_batch.models.errors import ModelError, ModelFileError, one_line

MIN_AGREEMENT = 0.999
"""The fast runtime scores by default only when its recorded argmax agreement with Keras on the
held-out split is at least this (``--runtime auto``)."""


RUNTIME_HELP = (
    "what runs the model: auto = the card's litert artifact (LiteRT, int8 weights; made at export) when its "
    "recorded argmax agreement with Keras on the held-out split is at least 99.9%%, else keras; keras = the "
    ".keras model on TensorFlow; litert = the artifact (refused when the card records none)"
)
"""``--runtime``'s help (score, evaluate, predict); ``%%`` as argparse wants it."""


THREADS_ENV = "MNIST_BATCH_RUNTIME_THREADS"
"""Environment variable that sets the threads of one model call (default: :func:`default_threads`)."""


def default_threads() -> int:
    """Threads for one model call: ``$MNIST_BATCH_RUNTIME_THREADS``, else the cores this process may run on."""
    if os.environ.get(THREADS_ENV, "").isdigit() and int(os.environ[THREADS_ENV]) > 0:
        return int(os.environ[THREADS_ENV])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One way to run an exported digit model.

    Attributes:
      name: what ``--runtime`` takes.
      suffix: the artifact's file name beside ``NAME.keras`` is ``NAME + suffix``.
      package: the pip distribution it needs at scoring time (and its import name).
      module: the module imported to run it.
      description: one line for the card and ``--help``.
      convert: ``(keras model, path)`` writes the artifact (TensorFlow needed; export time only).
      load: ``(artifact bytes, threads)`` -> a callable float32 [B, 28, 28, 1] -> [B, C] with
        ``input_shape`` and ``output_shape`` like a Keras model's.
    """

    name: str
    suffix: str
    package: str
    module: str
    description: str
    convert: Callable[[Any, str], None]
    load: Callable[[bytes, int], Any]

    def available(self) -> bool:
        """Whether its package can be imported here."""
        import importlib.util

        return importlib.util.find_spec(self.module) is not None

    def artifact_uri(self, model_uri: str) -> str:
        """``models/cnn.keras`` -> ``models/cnn.tflite`` (same folder, local or remote)."""
        return model_uri.removesuffix(".keras") + self.suffix


# --- LiteRT ------------------------------------------------------------------------------------


def convert_litert(model: Any, path: str) -> None:
    """Writes ``model`` as a LiteRT flatbuffer with int8 weights (dynamic-range quantisation).

    Uses Keras 3's own exporter (TensorFlow's converter); the model is called once first, as the
    exporter needs a built model with known shapes.
    """
    import tensorflow as tf

    model(np.zeros((1, *MODEL_INPUT_SHAPE), np.float32), training=False)
    model.export(path, format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT])


_ANNOUNCED = threading.Event()


@contextlib.contextmanager
def _first_allocation_quiet() -> Iterator[None]:
    """LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to file descriptor 2
    (natively, whatever the log settings) at the first allocation of a process: that one allocation
    runs with descriptor 2 on /dev/null, so a library caller's console stays quiet. Later ones run as is."""
    if _ANNOUNCED.is_set():
        yield
        return
    _ANNOUNCED.set()
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


LITERT_CHUNK = 16
"""Images per interpreter call: a batch is run in chunks of this many (bitwise the same outputs).

A LiteRT call's cost per image grows with its batch once the activations leave the core's cache:
the default ``cnn`` on one XNNPACK thread costs 121-125 us/image at 8-16 images a call, 140 at 128
and 175-200 at 256 (docs/benchmarks.md, "Throughput at any size, in one process"); outputs are identical at any batch
size (dynamic-range quantisation scales each image's activations alone)."""


class LiteRTCall:
    """A LiteRT model as a function float32 [B, 28, 28, 1] -> float32 [B, C].

    One interpreter per calling thread and batch size (an interpreter is not thread-safe; RunInference
    shares one loaded model across a worker's threads), each built from the same checked bytes. A batch
    runs in chunks of :data:`LITERT_CHUNK` images, the remainder in powers of two (13 = 8 + 4 + 1), so a
    thread holds at most five interpreters whatever the batch sizes it meets.

    Args:
      data: the ``.tflite`` bytes.
      threads: threads per call (XNNPACK).
      chunk: images per interpreter call.
    """

    def __init__(self, data: bytes, threads: int, chunk: int = LITERT_CHUNK) -> None:
        self._data = bytes(data)
        self._threads = int(threads)
        self._chunk = int(chunk)
        self._local = threading.local()
        first = self._interpreter(1)[0]
        self.input_shape = (None, *(int(d) for d in first.get_input_details()[0]["shape"][1:]))
        self.output_shape = (None, *(int(d) for d in first.get_output_details()[0]["shape"][1:]))

    def _interpreter(self, size: int) -> tuple[Any, int, int]:
        """This thread's ``(interpreter, input index, output index)`` allocated for ``size`` images."""
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = {}
        if size in kept:  # at most the chunk and the powers of two below it (chunk_sizes)
            return kept[size]
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._data, num_threads=self._threads)
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        if int(inp["shape"][0]) != size:
            interpreter.resize_tensor_input(inp["index"], [size, *inp["shape"][1:]])
        with _first_allocation_quiet():
            interpreter.allocate_tensors()
        kept[size] = (interpreter, inp["index"], out["index"])
        return kept[size]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, *self.output_shape[1:]), np.float32)
        outputs = []
        for start, size in chunk_sizes(len(x), self._chunk):
            interpreter, inp, out = self._interpreter(size)
            interpreter.set_tensor(inp, x[start : start + size])
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(out).copy())
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def chunk_sizes(n: int, chunk: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the interpreter calls for ``n`` images: ``chunk`` at a time, then the
    remainder as powers of two, largest first (``chunk_sizes(45, 16)`` -> sizes 16, 16, 8, 4, 1)."""
    calls, start = [], 0
    while n - start >= chunk:
        calls.append((start, chunk))
        start += chunk
    size = 1 << max(chunk.bit_length() - 1, 0)
    while start < n:
        while size > n - start:
            size >>= 1
        calls.append((start, size))
        start += size
    return calls


def load_litert(data: bytes, threads: int) -> LiteRTCall:
    return LiteRTCall(data, threads)


# --- registry ----------------------------------------------------------------------------------

RUNTIMES: Mapping[str, Runtime] = {
    FAST_RUNTIME: Runtime(
        name=FAST_RUNTIME,
        suffix=".tflite",
        package="ai-edge-litert",
        module="ai_edge_litert",
        description="LiteRT (ai-edge-litert), int8 weights (dynamic-range quantisation), XNNPACK",
        convert=convert_litert,
        load=load_litert,
    ),
}
"""Artifact runtimes by name (``keras`` is the ``.keras`` file itself and has no entry)."""


def get_runtime(name: str) -> Runtime:
    """The artifact runtime called ``name``.

    Raises:
      ModelError: not an artifact runtime.
    """
    if name not in RUNTIMES:
        raise ModelError(f"unknown runtime {name!r} (artifact runtimes: {', '.join(RUNTIMES)}; or {KERAS_RUNTIME})")
    return RUNTIMES[name]


_LOADED: dict[tuple[str, str, int], Any] = {}
"""Artifacts loaded in this process, by (runtime, sha256 of the bytes, threads): the launcher's check
and an in-process worker (DirectRunner, ``predict``, ``evaluate``) share one load, as ``.keras``
models do (:data:`mnist_batch.models.files._BYTES_CACHE`)."""


def load_artifact(runtime: Runtime, data: bytes, uri: str, threads: int | None = None) -> Any:
    """The callable ``runtime`` makes of ``data`` (loaded once per process for the same bytes).

    Raises:
      ModelError: the runtime's package is not installed.
      ModelFileError: the bytes are not a model this runtime can load.
    """
    if not runtime.available():
        raise ModelError(
            f"{uri}: runtime {runtime.name} needs the {runtime.package} package (pip install {runtime.package}), "
            f"or score with --runtime {KERAS_RUNTIME}"
        )
    key = (runtime.name, hashlib.sha256(data).hexdigest(), threads or default_threads())
    if key in _LOADED:
        return _LOADED[key]
    try:
        loaded = runtime.load(data, key[2])
    except Exception as exc:
        raise ModelFileError(
            f"{uri}: cannot load the {runtime.name} model: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    _LOADED.clear()  # keep at most one
    _LOADED[key] = loaded
    return loaded
