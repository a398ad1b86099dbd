"""Where a run's outputs go: the two layouts (flat folder, runs root) and the paths inside them.

* ``flat``: ``OUT/<table>/`` and ``OUT/summary.json``, ``OUT/_SUCCESS``.
* ``runs``: ``ROOT/<table>/dt=D/run=ID/`` and ``ROOT/_runs/dt=D/run=ID/{summary.json,_SUCCESS}``.
"""

from __future__ import annotations

import dataclasses

from mnist_batch.runstore import fs
from mnist_batch.tables import (
    LAYOUTS,
    RUN_TABLES,
    RUNS_DIR,
    RUNS_TABLE,
    STAGING_DIR,
    SUCCESS_FILE,
    SUMMARY_FILE,
    TABLES,
    parse_partition,
    partition_parts,
)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one run's tables, metadata and staging go.

    Attributes:
      kind: ``flat`` or ``runs``.
      root: ``--output``: the flat output folder or the runs root.
      run_id: the run's id.
      dt: the run's ``dt=`` partition (``runs`` only).
    """

    kind: str
    root: str
    run_id: str
    dt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ValueError(f"kind must be 'flat' or 'runs', got {self.kind!r}")
        if self.kind == "runs" and not self.dt:
            raise ValueError("dt is required for the runs layout")

    @property
    def tables(self) -> dict:
        return RUN_TABLES if self.kind == "runs" else TABLES

    def table_dir(self, table: str) -> str:
        if self.kind == "flat":
            return fs.join(self.root, table)
        return fs.join(self.root, table, *partition_parts(self.dt, self.run_id))

    @property
    def meta_dir(self) -> str:
        if self.kind == "flat":
            return self.root
        return run_meta_dir(self.root, self.dt, self.run_id)

    def staging_dir(self, attempt: str) -> str:
        return fs.join(self.root, STAGING_DIR, attempt)

    @property
    def marker(self) -> str:
        return fs.join(self.meta_dir, SUCCESS_FILE)


def run_meta_dir(root: str, dt: str, run_id: str) -> str:
    return fs.join(root, RUNS_DIR, *partition_parts(dt, run_id))


def runs_index(root: str) -> dict[tuple[str, str], set[str]]:
    """``(dt, run_id)`` -> names of the files in ``ROOT/_runs/dt=/run=/``, from one listing."""
    prefix = fs.join(root, RUNS_DIR).rstrip("/") + "/"
    index: dict[tuple[str, str], set[str]] = {}
    for path in fs.list_files(fs.join(root, RUNS_DIR)):
        parts = path[len(prefix) :].replace("\\", "/").split("/")
        if len(parts) == 3 and (key := parse_partition(parts)):
            index.setdefault(key, set()).add(parts[2])
    return index


def table_partitions(root: str, table: str) -> set[tuple[str, str]]:
    """``(dt, run_id)`` of every ``ROOT/<table>/dt=/run=/`` folder holding a file (committed or not), one listing."""
    prefix = fs.join(root, table).rstrip("/") + "/"
    found = set()
    for path in fs.list_files(fs.join(root, table)):
        parts = path[len(prefix) :].replace("\\", "/").split("/")
        if len(parts) >= 3 and (key := parse_partition(parts)):
            found.add(key)
    return found


def run_partitions(root: str, run_id: str) -> list[str]:
    """The ``dt`` values under which ``run_id`` has metadata in a runs root (committed or not)."""
    return sorted(dt for dt, run in runs_index(root) if run == run_id)


def earlier_outputs(layout: Layout) -> list[str]:
    """What a replacing commit deletes, in order: an earlier run's tables and metadata at these places
    (its row of the runs table first)."""
    if layout.kind == "flat":
        files = [fs.join(layout.root, n) for n in (SUMMARY_FILE, SUCCESS_FILE) if fs.exists(fs.join(layout.root, n))]
        return [fs.join(layout.root, t) for t in TABLES if fs.list_files(fs.join(layout.root, t))] + files
    doomed = []
    for dt in run_partitions(layout.root, layout.run_id):
        earlier = dataclasses.replace(layout, dt=dt)
        doomed.append(earlier.meta_dir)
        doomed.extend(earlier.table_dir(t) for t in RUN_TABLES)
    # Table partitions of an uncommitted earlier attempt of this run id under today's dt.
    doomed.extend(layout.table_dir(t) for t in RUN_TABLES if fs.list_files(layout.table_dir(t)))
    # The runs table's row goes first, as it comes in last: a reader that joins a table with the
    # runs table sees the earlier run whole until its row is gone (on object stores, where the
    # other partitions are deleted one object at a time), then nothing of it.
    runs_table = fs.join(layout.root, RUNS_TABLE) + "/"
    return sorted(set(doomed), key=lambda path: (not path.startswith(runs_table), path))
