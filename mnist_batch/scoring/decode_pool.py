"""Decoding a group of files in a helper process while the scoring process runs the model.

Beam-free on purpose: the helper process imports this module, :mod:`mnist_batch.preprocess` and
:mod:`mnist_batch.files` (numpy, Pillow), never Beam; a model runtime only when it is given the model
to run too (:mod:`mnist_batch.scoring.helper_model`, the in-process job's LiteRT runs).

Why: one Python thread runs a single-process job's whole fused stage. Decoding holds the GIL (two
thirds of a file's cost), so one of two cores idles; a helper process has its own GIL: it decodes
group N+1 while the scoring process runs the model on group N (docs/benchmarks.md, "Both cores").

The unit of work is one group (a few hundred files): :func:`decode_group` takes ``(path, bytes or
None)`` per file and returns a :class:`DecodedGroup` -- the decoded pixels, and ``(index, stage,
error type, message)`` for each file that failed, as in the scoring process (both run :func:`decode_file`).

:class:`DecodePool` keeps at most ``depth`` groups in flight, and decodes in the caller until its
process has answered once (a small run never waits for it) and whenever the helper is behind.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from mnist_batch import decoding, preprocess
from mnist_batch.files import read_local
from mnist_batch.scoring.helper_model import HelperModel, load_helper_model, run_model

LOG = logging.getLogger(__name__)

Source = tuple[str, bytes | None]
"""One file to decode: ``(path, its bytes)``, or ``(local path, None)`` to read it (bounded) first."""


class DecodedGroup(NamedTuple):
    """What decoding one group gave.

    Attributes:
      ok: indexes (into the group) of the files that decoded, ascending.
      pixels: uint8 [len(ok), 28, 28], MNIST format; [0, 28, 28] once a helper's model ran on them.
      blank: bool [len(ok)]: no ink found (still scored, flagged).
      failed: ``(index, stage, error type name, message)`` per file that did not decode;
        stage is ``read``, ``decode`` or ``preprocess``.
      outputs: float32 [len(ok), C], the model's probabilities, when a helper given the model
        (:class:`HelperModel`) ran it too; None when the caller still has to.
      model_failure: ``(error type name, message)`` when that model call failed (each decoded file
        is then an ``inference`` dead letter, as when the caller's call fails).
    """

    ok: tuple[int, ...]
    pixels: np.ndarray
    blank: np.ndarray
    failed: tuple[tuple[int, str, str, str], ...]
    outputs: np.ndarray | None = None
    model_failure: tuple[str, str] | None = None


def decode_file(source: Source, max_bytes: int, max_pixels: int) -> preprocess.MnistImage | tuple[str, BaseException]:
    """One file -> its :class:`~mnist_batch.preprocess.MnistImage`, or ``(stage, exception)``."""
    path, data = source
    if data is None:
        try:
            data = read_local(path, max_bytes)
        except Exception as exc:  # noqa: BLE001 -- a file that cannot be read is a dead letter
            return "read", exc
    try:
        gray = decoding.decode_image(data, max_pixels=max_pixels)
    except Exception as exc:  # noqa: BLE001 -- ImageDecodeError, or anything a decoder raises
        return "decode", exc
    try:
        return preprocess.to_mnist(gray)
    except Exception as exc:  # noqa: BLE001 -- a normalisation failure is a dead letter
        return "preprocess", exc


def decode_group(sources: Sequence[Source], max_bytes: int, max_pixels: int) -> DecodedGroup:
    """A group of files -> :class:`DecodedGroup` (every file in ``ok`` or ``failed``)."""
    ok, pixels, blank, failed = [], [], [], []
    for index, source in enumerate(sources):
        result = decode_file(source, max_bytes, max_pixels)
        if isinstance(result, tuple):
            stage, exc = result
            failed.append((index, stage, type(exc).__name__, str(exc) or repr(exc)))
        else:
            ok.append(index)
            pixels.append(result.pixels)
            blank.append(result.blank)
    stacked = np.stack(pixels) if pixels else np.zeros((0, *preprocess.IMAGE_SHAPE), np.uint8)
    return DecodedGroup(tuple(ok), stacked, np.array(blank, dtype=bool), tuple(failed))


def module_process(module: str, **pipes: Any) -> subprocess.Popen:
    """``python -m module`` as a child process that finds this package as the caller did (its root
    first on ``PYTHONPATH``, whatever program started the run); ``pipes``: Popen's stdin/stdout/stderr."""
    package_root = str(pathlib.Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", module], close_fds=True, env={**os.environ, "PYTHONPATH": path}, **pipes
    )


class HelperGone(RuntimeError):
    """The helper process exited or its pipe broke (its groups are decoded in the caller instead)."""


class Helper:
    """One helper process, ``python -m mnist_batch.scoring.decode_pool``, spoken to over its stdin
    and stdout: length-prefixed pickles, ``(job, sources, max_bytes, max_pixels)`` in and
    ``(job, DecodedGroup)`` out, after one ``("ready", pid)``.

    A plain child process, not ``multiprocessing``: the helper imports only this module (never the
    launcher's ``__main__``, whatever program started the run), and when the scoring process dies
    by any means the helper reads end-of-file and exits. A thread here reads the answers and
    completes each job's future.
    """

    def __init__(self, model: HelperModel | None = None) -> None:
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._jobs = itertools.count()
        self.started: concurrent.futures.Future = concurrent.futures.Future()
        self._process = module_process(__name__, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_answers, name="decode-helper", daemon=True)
        self._reader.start()
        self._sending = threading.Lock()  # held while a message is written: the model, then each group
        if model is not None:  # hundreds of KB, taken only as the starting helper reads: a thread writes it
            self._sending.acquire()  # released once written, so no group goes before it
            threading.Thread(target=self._send_model, args=(model,), name="decode-helper-model", daemon=True).start()

    def _send_model(self, model: HelperModel) -> None:
        try:  # a helper gone (or its pipe closed) at once: the first submit says so
            with contextlib.suppress(OSError, ValueError):
                send(self._process.stdin, model)
        finally:
            self._sending.release()

    def submit(self, sources: Sequence[Source], max_bytes: int, max_pixels: int) -> concurrent.futures.Future:
        """Sends one group; the future gives its :class:`DecodedGroup` (or raises :class:`HelperGone`)."""
        job = next(self._jobs)
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.started.done() and self.started.exception() is not None:
                raise HelperGone("the decode helper has exited")
            self._futures[job] = future
        try:
            with self._sending:
                send(self._process.stdin, (job, list(sources), max_bytes, max_pixels))
        except OSError as exc:
            self._fail(HelperGone(f"the decode helper's pipe broke: {exc}"))
        return future

    def _read_answers(self) -> None:
        try:
            _, pid = receive(self._process.stdout)
            self.started.set_result(pid)
            while True:
                job, group = receive(self._process.stdout)
                with self._lock:
                    future = self._futures.pop(job)
                future.set_result(group)
        except Exception as exc:  # noqa: BLE001 -- end of file, a broken pipe: every waiter is told
            self._fail(HelperGone(f"the decode helper has exited ({type(exc).__name__})"))

    def _fail(self, error: HelperGone) -> None:
        with self._lock:
            waiting, self._futures = list(self._futures.values()), {}
            if not self.started.done():
                self.started.set_exception(error)
            elif self.started.exception() is None:
                self.started = concurrent.futures.Future()
                self.started.set_exception(error)
        for future in waiting:
            if not future.done():
                future.set_exception(error)

    def close(self, *, kill: bool = False) -> None:
        """Closes its stdin (it exits), waits a moment, kills it if it has not (``kill``: at once)."""
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=0 if kill else 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def send(stream, message: Any) -> None:
    """Writes one length-prefixed pickle and flushes."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def receive(stream) -> Any:
    """Reads one length-prefixed pickle (``EOFError`` at the end of the stream)."""
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("end of stream")
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("end of stream inside a message")
    return pickle.loads(data)


def serve(stdin, stdout) -> None:
    """The helper's loop: decode each group received until end of file (and run the model on it,
    once a :class:`HelperModel` has come)."""
    os.nice(HELPER_NICENESS)
    send(stdout, ("ready", os.getpid()))
    call = None
    while True:
        try:
            message = receive(stdin)
        except EOFError:
            return
        if isinstance(message, HelperModel):
            call = load_helper_model(message)
            continue
        job, sources, max_bytes, max_pixels = message
        group = decode_group(sources, max_bytes, max_pixels)
        send(stdout, (job, group if call is None else run_model(group, call)))


class DecodePool:
    """Decodes groups in one helper process, up to ``depth`` in flight, in submission order or not.

    ``submit(sources, tag)`` queues a group (decoded in the caller when ``depth`` are in flight);
    ``ready()`` returns the groups done so far; ``drain()`` all that remain, as ``(tag, DecodedGroup)``.

    The helper is a :class:`Helper` process. Until it has answered once, groups are decoded in
    the caller. If it dies, the groups it held are decoded again in the caller: no file is lost,
    and the helper is not restarted.

    Args:
      max_bytes, max_pixels: the run's ``--max-file-bytes`` and ``--max-pixels``.
      depth: groups in flight in the helper at most.
      model: a model the helper also runs on its groups (their ``outputs``); groups decoded in the
        caller come back without outputs, for the caller's own model call.
    """

    def __init__(self, max_bytes: int, max_pixels: int, *, depth: int = 2, model: HelperModel | None = None) -> None:
        self._limits = (max_bytes, max_pixels)
        self._depth = depth
        self._pending: collections.deque[tuple[Any, Sequence[Source], concurrent.futures.Future, float]] = (
            collections.deque()
        )
        self._done: list[tuple[Any, DecodedGroup]] = []
        self.decoded_here = 0
        """Groups the caller decoded itself (while the helper started, was behind, or had died)."""
        self.decoded_there = 0
        """Groups the helper decoded."""
        self._taken_back = False
        self._helper: Helper | None = Helper(model)

    @property
    def helper_pid(self) -> int | None:
        """The helper's process id once it has answered (None before, or once it has died)."""
        if self._helper is None or not self._helper.started.done() or self._helper.started.exception():
            return None
        return self._helper.started.result()

    def _here(self, tag: Any, sources: Sequence[Source]) -> None:
        self.decoded_here += 1
        self._done.append((tag, decode_group(sources, *self._limits)))

    def _usable(self) -> bool:
        """The helper has answered and has not died."""
        if self._helper is None or not self._helper.started.done():
            return False
        if self._helper.started.exception() is not None:
            self._broken()
            return False
        return True

    def _broken(self, why: str = "has exited") -> None:
        """The helper died (or froze: ``why``): decode what it held here, and stop using it."""
        helper, self._helper = self._helper, None
        if helper is not None:
            LOG.warning("the decode helper process %s; decoding continues in the scoring process", why)
            helper.close(kill=why != "has exited")
        while self._pending:
            tag, sources, *_ = self._pending.popleft()
            self._here(tag, sources)

    def _frozen(self) -> None:
        self._broken(f"has not answered for {HELPER_STALL_S:g} s (frozen or stopped) and was killed")

    def _collect(self, block: bool) -> None:
        """Moves finished groups (the oldest first; waiting for it when ``block``) to ``_done``.

        The oldest group may wait for the helper at most :data:`HELPER_STALL_S`: a helper that has
        not answered by then (stopped, stuck) is killed and its groups are decoded here.
        """
        while self._pending:
            tag, _, future, sent = self._pending[0]
            left = sent + HELPER_STALL_S - time.monotonic()
            if not future.done() and (not block or left <= 0):
                if left <= 0:
                    self._frozen()
                return
            try:
                result = future.result(timeout=max(left, 0))
            except concurrent.futures.TimeoutError:
                self._frozen()
                return
            except HelperGone:
                self._broken()
                return
            self._pending.popleft()
            self.decoded_there += 1
            self._done.append((tag, result))

    def submit(self, sources: Sequence[Source], tag: Any = None) -> None:
        """Queues one group (decoded in the helper, or here when it is not ready or is behind)."""
        if not self._usable():
            self._here(tag, sources)
            return
        self._collect(block=False)
        if self._helper is None:  # found frozen just now
            self._here(tag, sources)
            return
        if len(self._pending) >= self._depth:
            self._here(tag, sources)  # the helper is behind: this core decodes too
            return
        try:
            future = self._helper.submit(sources, *self._limits)
        except HelperGone:
            self._broken()
            self._here(tag, sources)
            return
        self._pending.append((tag, sources, future, time.monotonic()))

    def ready(self) -> list[tuple[Any, DecodedGroup]]:
        """The groups decoded so far (each returned once)."""
        self._collect(block=False)
        done, self._done = self._done, []
        return done

    def drain(self) -> list[tuple[Any, DecodedGroup]]:
        """Every group still queued: the newest taken back and decoded here while the helper works on
        the oldest (the last groups end on both cores; its answer to one taken back is dropped)."""
        self._collect(block=False)
        while len(self._pending) > 1 and self._helper is not None:
            tag, sources, *_ = self._pending.pop()
            self._taken_back = True
            self._here(tag, sources)
            self._collect(block=False)
        self._collect(block=True)
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Stops the helper (call :meth:`drain` first); at once if it may decode a group taken back."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close(kill=self._taken_back)


HELPER_STALL_S = 60.0
"""How long a group may wait for the helper before it is taken for frozen (SIGSTOP, a hung decoder),
killed, and its groups decoded here (256 files take it well under a second; 60 s: a loaded machine)."""

HELPER_NICENESS = 19
"""The helper takes only the cycles the scoring process (the critical path) leaves; that decodes itself
when the helper falls behind. At 50,000 files, alternated: niceness 0 9.7-11.8 s, 10 9.0-10.3 s,
19 9.0-9.5 s (docs/benchmarks.md, "Both cores")."""

HELPERS_ENV = "MNIST_BATCH_DECODE_HELPERS"
"""Environment variable that sets the decode helper processes of a single-process run (0 turns them off)."""


def helper_count(cores: int | None = None) -> int:
    """Decode helpers for one scoring process: ``$MNIST_BATCH_DECODE_HELPERS``, else one when
    there are 2 or more cores, else none."""
    if os.environ.get(HELPERS_ENV, "").isdigit():
        return int(os.environ[HELPERS_ENV])
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return 1 if cores >= 2 else 0


if __name__ == "__main__":  # the helper process (Helper starts it)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the launcher; this exits at end of file
    from mnist_batch.scoring import decode_pool  # answers pickle by this name, not as __main__'s

    decode_pool.serve(sys.stdin.buffer, sys.stdout.buffer)
