"""Entry point for script-style launches of training (same code and options as ``mnist-batch train``).

Train the default ``cnn`` on the bundled sample and export it::

    python pipelines/train.py --export models/cnn.keras

A seed network, with a run dir (checkpoints, CSV history, learning curve; repeat the same
command after a crash to resume from the last completed epoch)::

    python pipelines/train.py --model cnn-keras --epochs 10 --run-dir runs/cnn-keras --export models/cnn-keras.keras

Full MNIST from IDX files, on all local GPUs with mixed precision::

    python pipelines/train.py --dataset idx:/data/mnist --strategy mirrored --mixed-precision --export models/cnn.keras

Two workers with ``MultiWorkerMirroredStrategy`` (run one command per worker; ``index`` 0 is the
chief and the only one that writes the run dir and the export)::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        python pipelines/train.py --strategy multi-worker --run-dir runs/mw --export models/cnn.keras
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 1}}' \\
        python pipelines/train.py --strategy multi-worker --run-dir runs/mw --export models/cnn.keras

Exit codes as ``mnist-batch train``: 0 ok, 2 bad argument, data, or unwritable path, or NaN loss.
"""

from __future__ import annotations

import sys

from mnist_batch.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Runs ``mnist-batch train`` with ``argv`` (default: the process arguments)."""
    # As the console script: TensorFlow's start-up noise filtered (--verbose shows it).
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)], filter_stderr=argv is None)


if __name__ == "__main__":
    sys.exit(main())
