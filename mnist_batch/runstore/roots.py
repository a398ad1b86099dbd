"""The output place of a run: a flat folder or a runs root (layout file, version, no mixing)."""

from __future__ import annotations

import json

from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.layout import Layout
from mnist_batch.tables import LAYOUT_FILE, LAYOUT_FORMAT, LAYOUT_VERSION, SUMMARY_FILE, TABLES


def prepare_root(layout: Layout, overwrite: bool) -> None:
    """Refuses an output of the other layout (or an older runs layout); creates a runs root's layout file."""
    root = layout.root
    layout_file = fs.join(root, LAYOUT_FILE)
    if layout.kind == "flat":
        if fs.exists(layout_file):
            raise RunStoreError(f"--output {root}: is a runs root (it has {LAYOUT_FILE}); add --layout runs")
        earlier = fs.exists(fs.join(root, SUMMARY_FILE)) or any(fs.list_files(fs.join(root, t)) for t in TABLES)
        if earlier and not overwrite:
            raise RunStoreError(f"--output {root}: holds an earlier run's outputs (pass --overwrite to replace them)")
        return
    if not fs.exists(layout_file):
        entries = fs.list_dir(root)
        if any(n.startswith("dt=") for n in entries):
            raise RunStoreError(
                f"--output {root}: holds runs of the old layout (ROOT/dt=.../run=...); score into a new root"
            )
        if any(n in entries for n in (*TABLES, SUMMARY_FILE)):
            raise RunStoreError(f"--output {root}: holds a flat run's outputs, not a runs root")
        info = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "partitioning": ["dt", "run"]}
        fs.create_exclusive(layout_file, json.dumps(info, indent=2) + "\n")
    try:
        info = json.loads(fs.read_text(layout_file))
    except ValueError as exc:
        raise RunStoreError(f"--output {root}: {LAYOUT_FILE} is not JSON ({exc})") from exc
    if info.get("format") != LAYOUT_FORMAT or info.get("layout_version") != LAYOUT_VERSION:
        raise RunStoreError(
            f"--output {root}: layout {info.get('format')} v{info.get('layout_version')} "
            f"(this version writes {LAYOUT_FORMAT} v{LAYOUT_VERSION})"
        )
