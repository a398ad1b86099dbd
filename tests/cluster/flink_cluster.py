"""Helpers of the cluster tests (``make test-cluster``; the cluster of ``make cluster-up``).

Not a ``conftest.py``: the main suite's modules import ``conftest`` by name (tests/conftest.py), and
a second one here would shadow it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "deploy" / "flink" / "cluster.sh"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MNIST_BATCH_PROGRESS_S="1")  # progress lines in a 20k run
sys.path.insert(0, str(REPO / "tests"))


def make_folder(source: pathlib.Path, target: pathlib.Path, count: int, start: int = 0) -> list[pathlib.Path]:
    """``count`` PNG files under target/<label>/ (numbered from ``start``), hard links to the exported ones."""
    files = sorted(source.glob("*/*.png"))
    made = []
    for i in range(start, start + count):
        src = files[i % len(files)]
        dst = target / src.parent.name / f"{i:07d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        made.append(dst)
    return made
