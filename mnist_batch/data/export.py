"""Writes one split of a data set as a folder of image files, ``DIR/<label>/<index>.<ext>``.

The output is deterministic (same data, same bytes). PNG is lossless: decoding an
exported PNG gives back the exact array. A small ``EXPORT.json`` records what was
written; ``classes.txt`` names the labels.
"""

from __future__ import annotations

import json
import pathlib
import shutil

from PIL import Image

from mnist_batch.data.base import Dataset
from mnist_batch.errors import DataError

EXPORT_FORMATS = ("png", "jpg")
MARKER = "EXPORT.json"


def export_images(
    dataset: Dataset,
    split: str,
    out_dir: str | pathlib.Path,
    *,
    fmt: str = "png",
    overwrite: bool = False,
) -> dict:
    """Exports ``dataset[split]`` as image files.

    Args:
      dataset: the loaded data set.
      split: ``train``, ``validation`` or ``test``.
      out_dir: destination; must be missing or empty, unless ``overwrite``.
      fmt: ``png`` (lossless) or ``jpg`` (quality 95, lossy).
      overwrite: replace an earlier export in ``out_dir`` (only a folder holding an
        ``EXPORT.json`` from this command is ever deleted).

    Returns:
      The manifest written to ``EXPORT.json``: data set, split, format, count, per-label counts.

    Raises:
      DataError: unknown split or format, non-empty destination without ``overwrite``, or
        a non-empty destination that is not an earlier export.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    part = dataset.split(split)
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: directory is not empty (pass --overwrite to replace an earlier export)")
        if not (out / MARKER).is_file():
            raise DataError(f"{out}: not empty and not an earlier export (no {MARKER}); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(part) - 1)))
    suffix = "png" if fmt == "png" else "jpg"
    for label in sorted(set(part.labels.tolist())):
        (out / str(label)).mkdir(exist_ok=True)
    for index, (image, label) in enumerate(zip(part.images, part.labels, strict=True)):
        path = out / str(int(label)) / f"{index:0{width}d}.{suffix}"
        img = Image.fromarray(image, mode="L")
        if fmt == "png":
            img.save(path, format="PNG")
        else:
            img.save(path, format="JPEG", quality=95)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in dataset.class_names), encoding="utf-8")
    manifest = {
        "dataset": dataset.name,
        "split": split,
        "format": fmt,
        "count": len(part),
        "per_label": {str(k): v for k, v in enumerate(dataset.counts()[split])},
        "class_names": list(dataset.class_names),
        "layout": "<label>/<index>." + suffix,
    }
    (out / MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
