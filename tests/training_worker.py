"""One worker of the 2-worker MultiWorkerMirroredStrategy test (run as a subprocess).

Usage: TF_CONFIG=... python tests/training_worker.py DATA.npz RUN_DIR EXPORT.keras WEIGHTS_OUT.npz MODEL

Trains through the public API (``train`` with ``strategy="multi-worker"``) and dumps the
final weights so the test can compare the two workers.
"""

from __future__ import annotations

import sys

import numpy as np

from mnist_batch.config import TrainConfig
from mnist_batch.training.train import train


def main() -> int:
    data, run_dir, export, weights_out, model = sys.argv[1:6]
    config = TrainConfig(
        dataset=f"npz:{data}",
        model=model,
        epochs=1,
        batch_size=16,
        strategy="multi-worker",
        run_dir=run_dir,
        export=export,
        verbose=2,
    )
    result = train(config)
    np.savez(weights_out, *[np.asarray(w) for w in result.model.get_weights()])
    print(f"worker finished: chief={result.is_chief} replicas={result.replicas} epochs={result.epochs_run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
