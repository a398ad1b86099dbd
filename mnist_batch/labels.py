"""Class labels from names: a folder named ``7`` or ``Sneaker`` is that class (data loaders and scoring)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence


def label_from_name(name: str, class_names: Sequence[str]) -> int | None:
    """A class index from a class name or an index string; None when it is neither."""
    name = name.strip()
    if name in class_names:
        return list(class_names).index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    return None


def parent_name(path: str) -> str:
    """``a/b/7/x.png`` -> ``7`` (``/`` separated, as every Beam filesystem names files)."""
    return posixpath.basename(posixpath.dirname(path.replace(os.sep, "/")))
