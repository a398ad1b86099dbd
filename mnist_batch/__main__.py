"""``python -m mnist_batch`` is the same as the ``mnist-batch`` command."""

from mnist_batch.cli import entry_point

entry_point()
