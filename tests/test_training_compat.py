"""The Keras internal that training/compat.py depends on still behaves as assumed.

If one of these fails after a Keras upgrade, update mnist_batch/training/compat.py (and
only it): resume would otherwise silently restart from epoch 0.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mnist_batch.training import compat  # noqa: E402


def _tiny_model():
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.slow
def test_backup_and_restore_records_completed_epochs_where_compat_reads_them(tmp_path):
    x = np.zeros((8, 4), np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    backup = tmp_path / "backup"
    assert compat.backup_completed_epochs(backup) == 0 and not compat.has_backup(backup)

    with pytest.raises(KeyboardInterrupt):
        _tiny_model().fit(
            x, y, epochs=5, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(backup)), _StopAfter(2)]
        )
    assert compat.backup_metadata_path(backup).is_file(), (
        f"keras.callbacks.BackupAndRestore no longer writes {compat.BACKUP_METADATA_FILE}: update training/compat.py"
    )
    assert compat.has_backup(backup)
    assert compat.backup_completed_epochs(backup) == 2

    # fit resumes at exactly that epoch: the loop's initial_epoch for the same backup.
    started = []
    resumed = _tiny_model()
    resumed.fit(
        x,
        y,
        epochs=5,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch)),
        ],
    )
    assert started == [2, 3, 4]
    assert compat.backup_completed_epochs(backup) == 0, "a completed run deletes its backup"


def test_unreadable_backup_metadata_means_no_backup(tmp_path):
    compat.backup_metadata_path(tmp_path).write_text("not json", encoding="utf-8")
    assert compat.backup_completed_epochs(tmp_path) == 0
