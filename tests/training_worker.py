"""One worker of the 2-worker MultiWorkerMirroredStrategy test (run as a subprocess).

Usage: TF_CONFIG=... python tests/training_worker.py DATA.npz RUN_DIR EXPORT.keras WEIGHTS_OUT.npz MODEL [ema]

With ``ema``, the model keeps its weight moving average even on this tiny run and early
stopping (patience 1) restores the best epoch, so the custom loop's EMA swaps are exercised.

Trains through the public API (``train`` with ``strategy="multi-worker"``) and dumps the
final weights so the test can compare the two workers.
"""

from __future__ import annotations

import sys

import numpy as np

from mnist_batch.config import TrainConfig
from mnist_batch.training import callbacks, zoo
from mnist_batch.training.train import train


def main() -> int:
    data, run_dir, export, weights_out, model = sys.argv[1:6]
    ema = sys.argv[6:7] == ["ema"]
    if ema:
        zoo.EMA_MIN_STEPS = 1
    config = TrainConfig(
        dataset=f"npz:{data}",
        model=model,
        epochs=1,
        batch_size=16,
        strategy="multi-worker",
        run_dir=run_dir,
        export=export,
        verbose=2,
        patience=1 if ema else 0,
    )
    result = train(config)
    np.savez(weights_out, *[np.asarray(w) for w in result.model.get_weights()])
    uses_ema = callbacks.ema_optimizer(result.model.optimizer) is not None
    print(
        f"worker finished: chief={result.is_chief} replicas={result.replicas} epochs={result.epochs_run} ema={uses_ema}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
