"""JSON for people: indented objects, but lists of numbers on one line (a matrix row a line)."""

from __future__ import annotations

import json
import re
from typing import Any

_SCALAR = r"(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)"
_SCALAR_LIST = re.compile(rf"\[\n\s*({_SCALAR}(?:,\n\s*{_SCALAR})*)\n\s*\]")
"""A list of scalars as ``json.dumps(indent=...)`` writes it, one item a line.

JSON strings cannot hold a raw newline, so the pattern never matches inside a string.
"""


def dumps(obj: Any, *, indent: int = 2, sort_keys: bool = False) -> str:
    """``json.dumps(obj, indent=indent)`` with every list of scalars kept on one line.

    Example: a confusion matrix prints as one ``[50, 0, 1, ...]`` line per row instead of
    one number a line. The result parses back to the same object.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys)
    return _SCALAR_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\n\s*", m.group(1))) + "]", text)
