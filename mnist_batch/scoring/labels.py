"""True labels of scored files: from a ``path,label`` CSV, else from the parent folder's name."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from mnist_batch.files import is_remote, local_path
from mnist_batch.labels import label_from_name, parent_name
from mnist_batch.runstore import fs
from mnist_batch.scoring.errors import ScoringError


def read_labels_csv(uri: str, class_names: Sequence[str]) -> dict[str, int]:
    """``path,label`` CSV (header optional) -> {path: label}; local paths also keyed absolute.

    Raises:
      ScoringError: unreadable file or a label that is not a class name or index.
    """
    try:
        text = fs.read_text(uri)
    except Exception as exc:
        raise ScoringError(f"--labels-csv {uri}: cannot read ({type(exc).__name__}: {exc})") from exc
    labels: dict[str, int] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise ScoringError(f"--labels-csv {uri}:{line_no}: expected 'path,label', got {row!r}")
        path, label = row[0].strip(), row[1].strip()
        if line_no == 1 and (path.lower(), label.lower()) == ("path", "label"):
            continue
        index = label_from_name(label, class_names)
        if index is None:
            raise ScoringError(f"--labels-csv {uri}:{line_no}: label {label!r} is not a class name or index")
        labels[path] = index
        if not is_remote(path):
            labels[os.path.abspath(local_path(path))] = index
    return labels


class LabelLookup:
    """Path -> true label: the CSV's when one is given (local paths also matched absolute), else the folder's."""

    def __init__(self, class_names: Sequence[str], labels_csv: dict[str, int] | None = None) -> None:
        self._class_names = tuple(class_names)
        self._labels = labels_csv
        self._last: tuple[str, int | None] = ("", None)
        """The last folder named and its label: files come folder by folder, so one lookup a folder."""

    def __call__(self, path: str) -> int | None:
        if self._labels is not None:
            found = self._labels.get(path)
            if found is None and not is_remote(path):
                found = self._labels.get(os.path.abspath(local_path(path)))
            return found
        folder = path.replace(os.sep, "/").rpartition("/")[0]
        if folder != self._last[0] or not folder:
            self._last = (folder, label_from_name(parent_name(path), self._class_names))
        return self._last[1]

    def many(self, paths: Sequence[str]) -> list[int | None]:
        """The label of each of ``paths`` (as :meth:`__call__`, one lookup a folder): a group's labels at once."""
        return [self(path) for path in paths]
