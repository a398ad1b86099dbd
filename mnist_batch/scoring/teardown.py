"""What a launch leaves behind: its leases released (or named for ``runs clean`` when the store did
not let them go), a failed attempt's staging deleted unless its commit started, and the clause
that says what became of the run."""

from __future__ import annotations

import contextlib
import json

from mnist_batch.runstore import claims, fs
from mnist_batch.runstore.commit import pending_journals
from mnist_batch.runstore.layout import Layout
from mnist_batch.tables import CLAIMS_DIR, STAGING_DIR


def release_all(leases: list[claims.Lease], root: str) -> str:
    """Releases the launch's leases and tidies the root; what was left behind, as a clause ("" if none).

    A lease the store did not let this launch release (unreachable, refused) stays: it is stale once
    the launcher has exited, and ``runs clean`` (or the next launch) removes it.
    """
    left, failures = [], []
    for lease in leases:
        try:
            lease.release_or_raise()
        except Exception as exc:  # noqa: BLE001 -- the store failed: left for runs clean
            left.append(lease.uri)
            failures.append(type(exc.__cause__ or exc).__name__)
    with contextlib.suppress(Exception):
        tidy(root)
    if not left:
        return ""
    why = ", ".join(dict.fromkeys(failures))  # the store's failure was named once already: its kind here
    return f"lease(s) left for `mnist-batch runs clean {root}` (the store failed to release them: {why}): {', '.join(left)}"


def tidy(root: str) -> None:
    """Removes the staging and lease folders of ``root`` when nothing is left in them."""
    fs.remove_empty_dir(fs.join(root, STAGING_DIR))
    fs.remove_empty_dir(fs.join(root, CLAIMS_DIR))


def abandon(layout: Layout, attempt: str, *, before_commit: bool = False) -> str:
    """Deletes a failed attempt's staging folder, unless its commit had started; what became of the
    run, as the clause after "run X failed" (", nothing committed", or what ``runs clean`` will do).

    A journal marked ``fenced`` had passed every check: ``runs clean`` (or the next launch) completes
    that commit; an unfenced one is rolled back (:mod:`mnist_batch.runstore.commit`).

    ``before_commit``: the job failed in a step before its commit
    (:class:`~mnist_batch.runstore.errors.UncommittedStorageError`), so no journal of this attempt
    exists and none is looked for: "nothing committed" is known even while the store is away.
    """
    clean = f"`mnist-batch runs clean {layout.root}`"
    if before_commit:
        try:
            fs.delete_tree(layout.staging_dir(attempt))
        except Exception:  # noqa: BLE001 -- the store is still away: runs clean deletes the staging later
            return f", nothing committed (its staged shards, if any, are left for {clean})"
        return ", nothing committed"
    try:
        mine = [j for j in pending_journals(layout.root) if json.loads(fs.read_text(j)).get("attempt") == attempt]
        if not mine:
            fs.delete_tree(layout.staging_dir(attempt))
            return ", nothing committed"
        fenced = json.loads(fs.read_text(mine[0])).get("fenced", True)
    except Exception as exc:  # noqa: BLE001 -- the store failed again: say so, never guess
        failed = type(exc.__cause__ or exc).__name__  # the store's failure is named once, after this clause
        return f" (whether its commit started is unknown, the store failed again: {failed}; {clean} finishes it)"
    if fenced:
        return f" mid-commit, not yet visible to readers; {clean} (or the next launch) completes it ({mine[0]})"
    return f", nothing committed; {clean} (or the next launch) rolls its journal back ({mine[0]})"
