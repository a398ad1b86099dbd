"""The run store's own error: a run cannot be claimed, committed, read or placed (one line, exit 2)."""

from __future__ import annotations

from mnist_batch.errors import MnistBatchError


class RunStoreError(MnistBatchError, ValueError):
    """A run store refuses an operation: bad run id, output of the other layout, live lease, lost shard, ..."""
