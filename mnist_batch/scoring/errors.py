"""Errors of the scoring side that the command line reports as one line (exit 2)."""

from __future__ import annotations

from mnist_batch.errors import MnistBatchError


class ScoringError(MnistBatchError, ValueError):
    """A scoring run cannot start: bad model, model/card mismatch, input matching nothing, ..."""
