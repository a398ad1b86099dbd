"""The model run in the decode helper too: each process decodes *and* scores whole groups.

The in-process job (:mod:`mnist_batch.inprocess.job`) gives its decode helper the checked bytes of an
artifact runtime's model (LiteRT). The helper then returns each group with the model's outputs, and
the scoring process runs the model only on the groups it decoded itself. On 2 cores each process runs
one interpreter thread on whole groups: 4 % less wall time at 50,000 files than one process running
the model on 2 threads while the other decodes (docs/benchmarks.md, "Throughput at any size, in one
process"). Only with one core per process (:func:`mnist_batch.inprocess.job.load_scorer`).
Outputs are bitwise those of the scoring process's own call (same bytes, one image's outputs do not
depend on its batch or the threads).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from mnist_batch import preprocess

LOG = logging.getLogger(__name__)


class HelperModel(NamedTuple):
    """A model for the helper to run on what it decodes: an artifact runtime's name and the checked
    bytes the caller loaded (one interpreter thread: the helper is one core's worth of work)."""

    runtime: str
    data: bytes


def run_model(group: Any, call: Any) -> Any:
    """``group`` (a :class:`~mnist_batch.scoring.decode_pool.DecodedGroup`) with the outputs of ``call``
    (a loaded artifact) on its pixels, float32 [len(group.ok), C], or the call's failure. Either way
    its pixels are dropped (uint8 [0, 28, 28]): the caller needs only the outputs, and 200 KB a group
    of 256 need not be pickled, piped and unpickled again."""
    from mnist_batch.models.predictor import to_probabilities

    if not group.ok:
        return group
    try:
        outputs = to_probabilities(call(preprocess.normalize(group.pixels)))
    except Exception as exc:  # noqa: BLE001 -- a failed call is each file's dead letter, as in the caller
        return group._replace(pixels=group.pixels[:0], model_failure=(type(exc).__name__, str(exc) or repr(exc)))
    outputs = np.asarray(outputs, np.float32).reshape(len(group.ok), -1)
    return group._replace(pixels=group.pixels[:0], outputs=outputs)


def load_helper_model(model: HelperModel) -> Any:
    """The helper's callable for ``model`` (None when it cannot be loaded here: the caller runs the model)."""
    from mnist_batch.models.runtimes import get_runtime

    try:
        return get_runtime(model.runtime).load(model.data, 1)
    except Exception:  # noqa: BLE001 -- the caller loaded the same bytes; it runs the model itself then
        LOG.warning("the decode helper could not load the %s model; the scoring process runs it", model.runtime)
        return None
