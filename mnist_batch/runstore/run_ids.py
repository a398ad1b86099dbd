"""Run ids: unique by default, and safe as a ``run=ID`` partition that every reader types as a string."""

from __future__ import annotations

import datetime
import re
import uuid

from mnist_batch.runstore.errors import RunStoreError

RUN_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,127}$")
RESERVED_RUN_IDS = frozenset({"true", "false", "nan", "inf", "infinity", "null", "none"})
"""Ids that some Parquet readers would type as a boolean, a float or a null in a ``run=`` partition."""


def default_run_id(now: datetime.datetime | None = None) -> str:
    """A unique run id: ``r`` + UTC time + 8 random hex digits, e.g. ``r20261122T021500Z-3fa9c2d1``.

    The leading letter keeps the ``run=`` partition a string for every Parquet reader; the
    random part keeps two launches in the same second apart.
    """
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"r{stamp}-{uuid.uuid4().hex[:8]}"


def check_run_id(run_id: str) -> str:
    """Returns ``run_id`` when it is a safe folder name that every reader types as a string.

    Raises:
      RunStoreError: otherwise, naming the rule.
    """
    if not RUN_ID_RE.match(run_id) or run_id.lower() in RESERVED_RUN_IDS:
        raise RunStoreError(
            f"--run-id {run_id!r}: start with a letter, then letters, digits and ._- only (at most 128), "
            f"not one of {', '.join(sorted(RESERVED_RUN_IDS))} (readers would not type it as a string)"
        )
    return run_id
