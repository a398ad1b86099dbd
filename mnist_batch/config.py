"""Frozen, validated settings for training and scoring.

Each dataclass validates itself once, in ``__post_init__``, and raises a ``ValueError``
whose message names the offending field, e.g. ``"batch_size must be > 0, got -3"``.
"""

from __future__ import annotations


def require(condition: bool, field: str, message: str, value: object) -> None:
    """Raises ``ValueError(f"{field} {message}, got {value!r}")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{field} {message}, got {value!r}")


# --- training settings (TrainConfig) -------------------------------------------------------


# --- scoring settings (ScoreConfig) --------------------------------------------------------
