"""The in-job commit: the last step of every scoring job writes the run's summary and commits it.

:class:`CommitRunFn` runs inside the job, once every table's shards are final (its side inputs), so
a launcher that does not wait (Dataflow templates, detached launches) still gets committed runs;
:class:`LaunchRecord` (:mod:`mnist_batch.scoring.attempt`, Beam-free) is what the launcher knew, handed
to it for the summary; the commit itself is :func:`~mnist_batch.scoring.attempt.commit_attempt`, which
the in-process engine calls too. The launcher is :mod:`mnist_batch.scoring.launch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mnist_batch.runstore import claims
from mnist_batch.runstore.layout import Layout
from mnist_batch.scoring.attempt import LaunchGoneError, LaunchRecord, commit_attempt  # noqa: F401 -- LaunchGoneError re-exported
from mnist_batch.scoring.storage_fn import StorageDoFn


class CommitRunFn(StorageDoFn):
    """Stats -> the run's summary, then its commit (:func:`commit.commit_run`), inside the job.

    Its side inputs are the ``(path, rows)`` each table's writer emits once the shard is closed,
    so it runs only when every table is complete; committing in the job means a launcher that
    does not wait (Dataflow templates, detached launches) still gets committed runs.

    A launch that waits holds its leases while the job runs (``held_leases``); if its launcher
    died meanwhile (SIGKILL, lost host), the job runs on on a cluster, and this step refuses to
    commit (:class:`LaunchGoneError`): the job fails, nothing is committed, and the next launch
    on the root deletes the staging (:func:`commit.recover`).
    """

    def __init__(
        self,
        layout: Layout,
        attempt: str,
        tables: list[str],
        record: LaunchRecord,
        *,
        max_error_rate: float | None,
        replace: bool,
        detached_leases: list[str],
        held_leases: list[str] = (),
        fences: list[tuple[str, str]] | None = None,
        storage_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(storage_settings)
        self._held_leases = list(held_leases)
        self._layout = layout
        self._attempt = attempt
        self._tables = tables
        self._launch = record.as_dict()
        self._max_error_rate = max_error_rate
        self._replace = replace
        self._detached_leases = detached_leases
        self._fences = list(fences or [])

    def setup(self) -> None:
        super().setup()  # the launch's storage settings, on whichever worker this runs

    def process(self, stats: dict[str, Any], *shards) -> Iterator[str]:
        commit_attempt(
            self._layout,
            self._attempt,
            dict(zip(self._tables, (list(s) for s in shards), strict=True)),
            stats,
            self._launch,
            max_error_rate=self._max_error_rate,
            replace=self._replace,
            held_leases=self._held_leases,
            fences=self._fences,
        )
        tokens = dict(self._fences)
        for uri in self._detached_leases:
            claims.release_lease(uri, tokens[uri])
        yield self._layout.marker
