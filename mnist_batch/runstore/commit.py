"""The commit that makes a run's shards visible, all at once or not at all.

A run writes its shards into ``<root>/_staging/<attempt>/<table>/`` (readers skip ``_`` paths).
When every shard is final, :func:`commit_run` (the pipeline's last step) records a journal
(``_COMMITTING``: the moves and the summary), moves the staged shards into the tables, writes
``summary.json`` and then the ``_SUCCESS`` marker, deletes what the run replaced elsewhere, and
deletes the journal and the staging folder. Every step can be repeated (:func:`apply_journal`),
so a commit cut short by a crash is completed by the next launch or by ``mnist-batch runs
clean`` (:func:`recover`).

Replacing on a local disk swaps each table's folder with the staged one (:func:`fs.swap`: one
``renameat2(RENAME_EXCHANGE)`` on Linux), so a reader listing a table sees the old run or the
new one, never neither and never both; the replaced folders land in the staging folder and go
with it; partitions of the run id under another ``dt=`` are deleted after the commit point.
On object stores (no folders, no swap) a replacing commit deletes the earlier partitions first,
then copies the new shards in (see deploy/README.md).

A journal whose shards are gone (neither staged nor moved: its launcher lost its staging to
``runs clean`` while paused) is an aborted commit: :func:`recover` rolls it back (the moved
partitions of that attempt and the journal are deleted, the run stays uncommitted) instead
of failing on it, so a root is never left where every later command fails. A launch passes its
leases (``fences``) to :func:`commit_run`, which checks them before the journal is written and
before the shards move (:func:`mnist_batch.runstore.claims.check_held`).

Such a journal is written *unfenced* (``"fenced": false``) and marked fenced only once the last
check passed, right before the first move. A journal still unfenced belongs to a launch that
never got past its checks (it lost its lease, its lease could not be read, or it died before):
that launch reported failure, so :func:`recover` rolls it back, never forward, even when its
own rollback could not finish (the store failed). Journals written before this mark existed
(no ``fenced`` key) are completed as before.

Two layouts (:class:`Layout`), one commit:

* ``flat``: ``OUT/<table>/`` and ``OUT/summary.json``, ``OUT/_SUCCESS``; ``--overwrite``
  replaces an earlier run's outputs at commit time (a failed run leaves them untouched).
* ``runs``: ``ROOT/<table>/dt=D/run=ID/`` and ``ROOT/_runs/dt=D/run=ID/{summary.json,_SUCCESS}``;
  replacing a committed run id (``--replace``) deletes every earlier partition of that id.

On a local disk a table's staged folder is renamed into place in one ``rename`` (each table
appears whole); on object stores each shard is copied then deleted (see deploy/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from mnist_batch import jsonfmt
from mnist_batch.runstore import claims, fs
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.layout import Layout, earlier_outputs, run_meta_dir, runs_index
from mnist_batch.runstore.shards import shard_rows, write_empty_shard
from mnist_batch.tables import JOURNAL_FILE, RUNS_DIR, STAGING_DIR, SUCCESS_FILE, SUMMARY_FILE


class CommitError(RunStoreError):
    """A run cannot be committed (already committed without replace, a shard lost, ...)."""


def read_marker(marker: str) -> dict[str, Any] | None:
    if not fs.exists(marker):
        return None
    try:
        return json.loads(fs.read_text(marker))
    except ValueError:
        return {}


def commit_run(
    layout: Layout,
    attempt: str,
    shards: dict[str, list[str]],
    summary: dict[str, Any],
    *,
    replace: bool,
    fences: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    rows: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Moves the emitted ``shards`` of ``attempt`` into the tables and commits the run.

    Args:
      layout: where the run goes.
      attempt: this launch's attempt id (names its staging folder).
      shards: table -> the paths of the shards the pipeline emitted (orphans of retried
        bundles are not among them and are deleted with the staging folder).
      summary: the run's summary (written to ``summary.json`` and ``_SUCCESS``).
      replace: replace an earlier committed run at the same place (flat ``--overwrite``,
        runs ``--replace``); without it an earlier commit is an error.
      fences: the launch's leases as ``(uri, token)``; each must still hold its token before
        the journal is written and before the shards move.
      rows: shard path -> the rows the job wrote into it; each such shard is re-opened and its
        footer's row count checked before anything is committed.

    Returns:
      The summary as committed.

    Raises:
      CommitError: the run is already committed (by another attempt) and ``replace`` is off.
      LeaseLostError: the launch lost a lease; nothing was written or moved.
      CommitError: a shard cannot be read back or holds other than the rows written into it.
    """
    existing = read_marker(layout.marker)
    if existing is not None and existing.get("attempt") == attempt:
        return existing  # this very commit already happened (a retried commit step)
    if existing is not None and not replace:
        raise CommitError(already_committed(layout, existing))
    staging = layout.staging_dir(attempt)
    shards = {t: list(shards.get(t, [])) for t in layout.tables}
    check_shards([p for paths in shards.values() for p in paths], rows or {}, layout.run_id)
    for table, paths in shards.items():
        if not paths:  # a table with no rows still gets its schema
            paths.append(write_empty_shard(fs.join(staging, table), layout.tables[table]))
    summary = {**summary, "attempt": attempt}
    what = f"commit run {layout.run_id}"
    claims.check_held(fences, what)
    earlier = earlier_outputs(layout) if existing is not None or layout.kind == "runs" or replace else []
    moves = plan_moves(layout, staging, shards)
    swapped = not fs.is_remote(layout.root)
    journal = {
        "attempt": attempt,
        "layout": dataclasses.asdict(layout),
        "delete": [] if swapped else earlier,  # before the moves (object stores)
        "retire": retired(layout, earlier, moves) if swapped else [],  # after the commit point
        "swap": sorted({dst for _, dst, *_ in moves} & set(earlier)) if swapped else [],
        "moves": moves,
        "summary": summary,
        "staging": staging,
        "fenced": not fences,  # marked by apply_journal once the last check passed
    }
    fs.write_atomic(fs.join(layout.meta_dir, JOURNAL_FILE), json.dumps(journal, sort_keys=True))
    try:
        apply_journal(journal, fences)
    except (claims.LeaseLostError, claims.LeaseUnknownError) as exc:
        try:
            roll_back(journal)  # stopped before the moves: nothing of ours moved in yet
        except Exception as rollback:  # noqa: BLE001 -- the store failed again: the journal stays unfenced
            raise type(exc)(
                f"{exc}; its rollback could not finish ({type(rollback).__name__}: "
                f"{' '.join(str(rollback).split())[:160]}): `mnist-batch runs clean {layout.root}` rolls it back"
            ) from exc
        raise
    return summary


def already_committed(layout: Layout, existing: dict[str, Any]) -> str:
    """Why a run cannot commit over the committed marker ``existing`` (no replace asked): the run that
    holds the output and the flag that replaces it (``--overwrite`` for a flat output, which holds
    one run of any id; ``--replace`` for a run id under a runs root)."""
    if layout.kind == "flat":
        other = existing.get("run_id") or str(existing.get("attempt", "?")).rsplit(".", 1)[0]  # attempt: RUN_ID.HEX
        first = "" if other == layout.run_id else f", before run {layout.run_id}"
        return f"{layout.marker} exists: run {other} is already committed into this output{first} (pass --overwrite)"
    return f"{layout.marker} exists: run {layout.run_id} is already committed (pass --replace)"


def check_shards(paths: list[str], rows: dict[str, int], run_id: str) -> None:
    """Every shard whose written row count is known is re-opened; its footer must say as many rows."""
    for path in paths:
        if path not in rows:
            continue
        try:
            found = shard_rows(path)
        except Exception as exc:  # truncated, not Parquet, gone: the commit must not go on
            raise CommitError(f"cannot commit run {run_id}: shard {path} cannot be read back ({exc})") from exc
        if found != rows[path]:
            raise CommitError(
                f"cannot commit run {run_id}: shard {path} holds {found} rows, the job wrote {rows[path]}"
            )


def plan_moves(layout: Layout, staging: str, shards: dict[str, list[str]]) -> list[list]:
    """The commit's moves.

    On a local disk, whole table folders: ``[src, dst, [shard names]]`` (the names tell which
    side of a swap holds this attempt's shards); elsewhere shard by shard: ``[src, dst]``.
    """
    moves = []
    for table, paths in shards.items():
        if fs.is_remote(layout.root):
            moves.extend([p, fs.join(layout.table_dir(table), fs.basename(p))] for p in paths)
            continue
        folder = fs.join(staging, table)
        keep = set(paths)
        for orphan in fs.list_files(folder):  # shards of failed bundle attempts
            if orphan not in keep:
                fs.delete_file(orphan)
        moves.append([folder, layout.table_dir(table), sorted(fs.basename(p) for p in paths)])
    return moves


def retired(layout: Layout, earlier: list[str], moves: list[list]) -> list[str]:
    """What a replacing commit deletes after its commit point: the earlier outputs it does not swap.

    That is the run id's partitions and metadata under another ``dt=`` (a flat output swaps all
    its tables and rewrites its summary and marker in place).
    """
    keep = {dst for _, dst, *_ in moves} | {layout.meta_dir, layout.marker, fs.join(layout.meta_dir, SUMMARY_FILE)}
    return [path for path in earlier if path not in keep]


def holds(folder: str, names: list[str]) -> bool:
    """Whether ``folder`` holds this attempt's shards (all move together, so the first tells)."""
    return fs.exists(fs.join(folder, names[0]))


def moved_in(move: list) -> bool:
    """Whether a move of :func:`plan_moves` happened: its destination holds this attempt's shards
    (a local folder, renamed or swapped) or its shard is no longer staged but in place (object stores)."""
    src, dst, *names = move
    return holds(dst, names[0]) if names else not fs.exists(src) and fs.exists(dst)


def staged(move: list) -> bool:
    """Whether a move's shards are still in staging (a swapped-out earlier folder does not count)."""
    src, _, *names = move
    return holds(src, names[0]) if names else fs.exists(src)


def apply_journal(journal: dict[str, Any], fences: list[tuple[str, str]] | tuple[tuple[str, str], ...] = ()) -> None:
    """Carries out (or finishes) a commit from its journal; every step may be repeated.

    ``fences`` (the committing launch's leases) are checked before anything is deleted or moved;
    once they passed, the journal is marked ``fenced`` (see the module docstring).
    """
    layout = Layout(**journal["layout"])
    journal_uri = fs.join(layout.meta_dir, JOURNAL_FILE)
    claims.check_held(fences, f"commit run {layout.run_id}")
    if journal["delete"]:
        for path in journal["delete"]:  # uncommit first: a reader never sees a marker over missing data
            if fs.basename(path) == SUCCESS_FILE:
                fs.delete_file(path)
            elif f"/{RUNS_DIR}/" in path:
                fs.delete_file(fs.join(path, SUCCESS_FILE))
        for path in journal["delete"]:
            if path != layout.meta_dir:
                fs.delete_tree(path)
                if layout.kind == "runs":
                    fs.remove_empty_dir(fs.parent(path))  # an emptied dt= folder
            else:
                fs.delete_file(fs.join(path, SUMMARY_FILE))
        journal = {**journal, "delete": []}
        fs.write_atomic(journal_uri, json.dumps(journal, sort_keys=True))
        claims.check_held(fences, f"commit run {layout.run_id}")
    if journal.get("fenced") is False:  # every check passed: from here on, recovery rolls forward
        journal = {**journal, "fenced": True}
        fs.write_atomic(journal_uri, json.dumps(journal, sort_keys=True))
    for move in journal["moves"]:
        apply_move(layout, move, set(journal.get("swap", [])))
    text = jsonfmt.dumps(journal["summary"], sort_keys=True) + "\n"  # matrix rows on one line
    fs.write_atomic(fs.join(layout.meta_dir, SUMMARY_FILE), text)
    fs.write_atomic(layout.marker, text)  # the commit point
    retire(layout, journal.get("retire", []))
    fs.delete_file(journal_uri)
    if journal.get("swap"):
        time.sleep(READER_GRACE_S)  # the swapped-out folders go with staging; see READER_GRACE_S
    fs.delete_tree(journal["staging"])


READER_GRACE_S = 1.0
"""How long a replacing commit leaves the swapped-out folders before deleting them. A reader that
opened a table's folder just before the swap lists the old folder's files: deleted at once, that
listing could come back empty (seen once: a pyarrow reader looping through two replaces under a
loaded test suite counted 0 rows in one of 16,592 passes). After the grace, such a reader can only
meet a missing file, a loud ``FileNotFoundError``, never a silent wrong count."""


def apply_move(layout: Layout, move: list, swap: set[str]) -> None:
    """One move of a commit, repeatable: a folder renamed or swapped into place, or a shard copied."""
    src, dst, *_ = move
    if moved_in(move):
        return  # moved (or swapped) already; a swapped-out earlier folder waits in staging
    if not staged(move):
        raise CommitError(f"cannot commit run {layout.run_id}: shard {src} is lost")
    if fs.exists(dst) and not fs.is_remote(dst):
        if dst in swap:
            fs.swap(src, dst)  # readers see the earlier folder or this one, never neither
            return
        fs.remove_empty_dir(dst)  # a folder made by hand beforehand, still empty
        if fs.exists(dst):
            raise CommitError(f"cannot commit run {layout.run_id}: {dst} already exists")
    fs.rename(src, dst)


def retire(layout: Layout, paths: list[str]) -> None:
    """Deletes an earlier run's outputs left after the commit point: its markers first."""
    for path in paths:
        if f"/{RUNS_DIR}/" in path:
            fs.delete_file(fs.join(path, SUCCESS_FILE))
    for path in paths:
        fs.delete_tree(path)
        if layout.kind == "runs":
            fs.remove_empty_dir(fs.parent(path))  # an emptied dt= folder


def pending_journals(root: str) -> list[str]:
    """Journals of commits cut short under a flat output or a runs root."""
    found = []
    if fs.exists(fs.join(root, JOURNAL_FILE)):
        found.append(fs.join(root, JOURNAL_FILE))
    for (dt, run_id), names in sorted(runs_index(root).items()):
        if JOURNAL_FILE in names:
            found.append(fs.join(run_meta_dir(root, dt, run_id), JOURNAL_FILE))
    return found


def lost_shards(journal: dict[str, Any]) -> list[str]:
    """The journal's shards that are neither staged nor moved (deleted under a paused launcher)."""
    layout = Layout(**journal["layout"])
    if (read_marker(layout.marker) or {}).get("attempt") == journal["attempt"]:
        return []  # committed: only the earlier run's leftovers remain to delete
    return [move[0] for move in journal["moves"] if not staged(move) and not moved_in(move)]


def roll_back(journal: dict[str, Any]) -> bool:
    """Undoes an aborted commit: what it moved in, its staging and its journal are deleted.

    On object stores moves happen only after the delete step of a replacing commit, so while
    ``delete`` is still listed nothing was moved (the earlier run is untouched); after it, the
    moved partitions of this attempt are deleted and the run id stays uncommitted. On a local
    disk a replacing commit swaps folders: once one swap happened the earlier run's folder went
    with the lost staging, so that run cannot be restored and is uncommitted whole (its marker,
    summary and every partition at this place deleted) rather than left half old, half gone.

    Returns:
      True when an earlier committed run was uncommitted this way.
    """
    layout = Layout(**journal["layout"])
    moved = [] if journal["delete"] else [move[1] for move in journal["moves"] if moved_in(move)]
    swapped_in = bool(set(moved) & set(journal.get("swap", [])))
    if swapped_in:
        fs.delete_file(layout.marker)  # uncommit first: a marker never stands over missing data
        fs.delete_file(fs.join(layout.meta_dir, SUMMARY_FILE))
        moved = [dst for _, dst, *_ in journal["moves"]]
    for dst in moved:
        fs.delete_tree(dst)
        if layout.kind == "runs" and not fs.is_remote(dst):
            fs.remove_empty_dir(fs.parent(dst))
    fs.delete_tree(journal["staging"])
    fs.delete_file(fs.join(layout.meta_dir, JOURNAL_FILE))
    if layout.kind == "runs":
        fs.remove_empty_dir(layout.meta_dir)
        fs.remove_empty_dir(fs.parent(layout.meta_dir))
    return swapped_in


def recover(root: str, live_attempts: set[str]) -> dict[str, list[str]]:
    """Finishes commits cut short, rolls back aborted ones, deletes the staging of dead launches.

    Args:
      root: a flat output folder or a runs root.
      live_attempts: attempts whose launch is still running (their staging is left alone).

    Returns:
      ``{"completed": [journal uris], "rolled_back": [journal uris], "uncommitted": [journal
      uris], "unfenced": [journal uris], "deleted": [staging folders]}``: journals rolled forward (every shard was there),
      journals rolled back (some shard was gone, or the journal was never fenced), of those the
      ones whose earlier committed run had been partly swapped out and was uncommitted
      (:func:`roll_back`), and ``"unfenced"``: of those rolled back, the ones never fenced.
    """
    completed, rolled_back, uncommitted, unfenced, deleted = [], [], [], [], []
    referenced = set()
    for uri in pending_journals(root):
        journal = json.loads(fs.read_text(uri))
        referenced.add(journal["attempt"])
        if journal["attempt"] in live_attempts:
            continue
        if journal.get("fenced") is False or lost_shards(journal):  # unfenced: its launch reported failure
            if journal.get("fenced") is False:
                unfenced.append(uri)
            if roll_back(journal):
                uncommitted.append(uri)
            rolled_back.append(uri)
            continue
        apply_journal(journal)
        completed.append(uri)
    staging = fs.join(root, STAGING_DIR)
    for attempt in fs.list_dir(staging):
        if attempt in live_attempts or attempt in referenced:
            continue
        fs.delete_tree(fs.join(staging, attempt))
        deleted.append(fs.join(staging, attempt))
    return {
        "completed": completed,
        "rolled_back": rolled_back,
        "uncommitted": uncommitted,
        "unfenced": unfenced,
        "deleted": deleted,
    }
