"""The one place that depends on a Keras internal (checked by tests/test_training_compat.py).

Keras has no public API for "which epoch will ``BackupAndRestore`` resume from": the
callback keeps it in a JSON file inside its backup directory and hands it to ``fit``
through a private model attribute. This package needs the number before training starts
(to print ``resuming from epoch N``, append to the CSV history, count epochs run and start
the multi-worker loop at the right epoch), so it reads that file here and nowhere else.
If a Keras upgrade renames the file or its key, ``tests/test_training_compat.py`` fails.
"""

from __future__ import annotations

import json
import os
import pathlib

BACKUP_METADATA_FILE = "training_metadata.json"
"""File ``keras.callbacks.BackupAndRestore`` writes in its backup dir after each saved epoch."""


def backup_metadata_path(backup_dir: str | os.PathLike) -> pathlib.Path:
    """Where ``BackupAndRestore(backup_dir)`` records the last completed epoch."""
    return pathlib.Path(backup_dir) / BACKUP_METADATA_FILE


def has_backup(backup_dir: str | os.PathLike) -> bool:
    """Whether ``BackupAndRestore(backup_dir)`` has saved at least one completed epoch."""
    return backup_metadata_path(backup_dir).is_file()


def backup_completed_epochs(backup_dir: str | os.PathLike) -> int:
    """Epochs a ``BackupAndRestore(backup_dir)`` backup has completed (0: none or unreadable).

    This is the ``initial_epoch`` the callback makes ``fit`` resume from.

    Args:
      backup_dir: the callback's ``backup_dir``.

    Returns:
      The number of completed epochs recorded in the backup, 0 when there is no backup.
    """
    try:
        return int(json.loads(backup_metadata_path(backup_dir).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
