"""Leases: a launch claims its run id (and, when incremental, the root's history) before it starts.

A lease is a small JSON file ``ROOT/_claims/<name>.json`` created atomically (written aside and
hard-linked in on a local disk, a conditional ``PUT`` with ``If-None-Match: *`` on S3; see :mod:`mnist_batch.runstore.fs`
for other object stores) and holding who owns it::

    {"name": "run=nightly", "run_id": ..., "attempt": ..., "token": <random hex>, "host": ...,
     "pid": ..., "started_at": ..., "heartbeat_at": <epoch s>, "ttl_s": 120, "detached": false}

A second launch that finds a live lease is refused (:class:`ClaimError`, one line, exit 2). A
lease is live while its owner is: on the same host, while the owner's process exists (a
killed launcher's lease is stale at once); elsewhere, while its heartbeat (refreshed every
``ttl_s / 4`` by a thread of the launcher) is younger than ``ttl_s``. A detached launch
(``wait=False``: the job runs on after the launcher exits) writes a long ``ttl_s`` and no
heartbeat; the job's commit step deletes its lease. A stale lease is taken over: locally by
renaming it away (one of two takers moves it); on S3 by replacing it with a ``PUT`` conditional on
the stale version's ETag (``If-Match``), so of two launchers taking over one stale lease exactly
one wins, and heartbeats and releases on S3 are conditional on the holder's own version too.

Fencing: every claim writes a fresh random ``token``, so a takeover (or ``runs clean``
deleting a stale lease) leaves the old holder's token nowhere. The commit checks
(:func:`check_held`) that every lease of its launch still holds its token right before the
journal is written and again right before the shards move; a launcher that lost a lease (it
was paused past ``ttl_s``: a VM migration, a long GC, SIGSTOP) stops with :class:`LeaseLostError`
and moves nothing. What remains is the time between that check and the step it guards
(deploy/README.md, "Run store": what bounds it on each kind of storage).

A lease read has three answers, never two: the lease (held by us, or by another launch), no
lease, or *unknown*: the store failed to answer (a timeout, a refused connection, a 5xx), which
:func:`read_lease` raises as :class:`LeaseUnknownError`. Unknown is never "gone": the commit's
fence check retries for :data:`UNKNOWN_WAIT_S` and then refuses to commit (one line, nothing
moved); ``runs clean`` and a launch's recovery stop with that line rather than judge a lease
they could not read dead.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from mnist_batch.runstore import fs
from mnist_batch.runstore.errors import RunStoreError
from mnist_batch.runstore.storage import storage_for
from mnist_batch.tables import CLAIMS_DIR

LEASE_TTL_S = 120.0
DETACHED_TTL_S = 24 * 3600.0
"""A detached launch's lease lasts this long unless its job's commit deletes it sooner."""


class ClaimError(RunStoreError):
    """Another live launch holds the lease (the message names it)."""


class LeaseLostError(ClaimError):
    """This launch's lease was taken over or deleted (it was paused past its ttl): it must not commit."""


class LeaseUnknownError(ClaimError):
    """A lease could not be read: the store failed (not "no lease"); nothing may be judged from it."""


UNKNOWN_WAIT_S = 30.0
"""How long the commit's fence check retries a lease read that failed before it refuses to commit
(well under :data:`LEASE_TTL_S`, so a lease still ours when the store comes back is still live)."""
UNKNOWN_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""The pauses between those retries (the last one repeats)."""


def lease_uri(root: str, name: str) -> str:
    return fs.join(root, CLAIMS_DIR, f"{name}.json")


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def is_live(owner: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a lease's owner may still be running (see the module docstring)."""
    if owner is None:
        return True  # being written this very moment
    now = time.time() if now is None else now
    fresh = now - float(owner.get("heartbeat_at", 0)) < float(owner.get("ttl_s", LEASE_TTL_S))
    if owner.get("detached"):
        return fresh
    if owner.get("host") == socket.gethostname():
        return pid_alive(int(owner.get("pid", -1)))
    return fresh


def read_lease(uri: str) -> dict[str, Any] | None:
    """The owner written in the lease at ``uri``; None when there is no lease (or it is not a JSON
    object yet: being written).

    Raises:
      LeaseUnknownError: the store failed to answer (anything but "not found").
    """
    try:
        text = fs.read_text(uri)
    except Exception as exc:  # each filesystem says "not found" its own way
        if missing(uri, exc):
            return None
        raise unknown(uri, exc) from exc
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def missing(uri: str, exc: BaseException) -> bool:
    """Whether ``exc``, raised reading ``uri``, means "no such file" (and nothing else)."""
    return storage_for(uri).missing(uri, exc)


def unknown(uri: str, exc: BaseException) -> LeaseUnknownError:
    text = " ".join(str(exc).split())[:200]
    return LeaseUnknownError(f"the lease {uri} cannot be read ({type(exc).__name__}: {text})")


def conditional(uri: str) -> bool:
    """True where leases use the store's conditional requests (S3: ETags), not files."""
    return storage_for(uri).conditional


def read_lease_version(uri: str) -> tuple[dict[str, Any] | None, str] | None:
    """S3: ``(owner, etag)`` of the lease object (owner None when it is not JSON); None when absent."""
    try:
        got = storage_for(uri).read_versioned(uri)
    except Exception as exc:  # read_versioned answers "not found" with None
        raise unknown(uri, exc) from exc
    if got is None:
        return None
    try:
        return json.loads(got[0].decode("utf-8")), got[1]
    except ValueError:
        return None, got[1]


class Lease:
    """A held lease; :meth:`release` (or leaving the ``with`` block) deletes it if still ours."""

    def __init__(self, uri: str, owner: dict[str, Any], etag: str | None = None) -> None:
        self.uri = uri
        self.owner = owner
        self.etag = etag
        """S3: the version of the lease object this launch wrote last (its heartbeats replace only that)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not owner["detached"]:
            self._thread = threading.Thread(target=self._beat, name=f"lease {owner['name']}", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        period = float(self.owner["ttl_s"]) / 4
        while not self._stop.wait(period):
            if self.etag is not None:
                self.owner["heartbeat_at"] = time.time()
                with contextlib.suppress(Exception):
                    etag = storage_for(self.uri).replace_if(self.uri, json.dumps(self.owner).encode("utf-8"), self.etag)
                    if etag is None:
                        return  # taken over or deleted: the version we wrote is gone
                    self.etag = etag
                continue
            try:
                owner = read_lease(self.uri)
            except LeaseUnknownError:
                continue  # the store failed this time: the next beat asks again
            if owner is None or owner.get("token") != self.owner["token"]:
                return  # taken over or released: never write someone else's lease
            self.owner["heartbeat_at"] = time.time()
            with contextlib.suppress(Exception):
                fs.write_atomic(self.uri, json.dumps(self.owner))

    def release(self) -> None:
        self._stop.set()
        release_lease(self.uri, self.owner["token"])

    def release_or_raise(self) -> None:
        """:meth:`release`, raising the store's error when it could not be done (the lease is then
        left: stale once this process has exited, removed by ``runs clean``)."""
        self._stop.set()
        release_lease(self.uri, self.owner["token"], quiet=False)

    @property
    def fence(self) -> tuple[str, str]:
        """``(uri, token)``: what :func:`check_held` checks (picklable, for the job's commit step)."""
        return self.uri, self.owner["token"]

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def release_lease(uri: str, token: str, *, quiet: bool = True) -> None:
    """Deletes the lease at ``uri`` if it still holds ``token`` (never another launch's lease).

    A store that fails leaves the lease for ``runs clean`` (which judges it later); ``quiet=False``
    raises that failure instead of passing over it.
    """
    with contextlib.suppress(*(() if not quiet else (Exception,))):
        if conditional(uri):
            current = read_lease_version(uri)
            if current is not None and current[0] is not None and current[0].get("token") == token:
                storage_for(uri).delete_if(uri, current[1])  # only that version: a takeover since is left alone
            return
        owner = read_lease(uri)
        if owner is not None and owner.get("token") == token:
            fs.delete_file(uri)


def held_by(uri: str, attempt: str) -> bool:
    """True while attempt ``attempt`` still holds the live lease at ``uri`` (the commit's last check).

    False when the lease is gone, another launch took it over, or its owner is dead (on this
    host: its process is gone; elsewhere: its heartbeat is older than its ``ttl_s``).
    """
    owner = read_lease(uri)
    return owner is not None and owner.get("attempt") == attempt and is_live(owner)


def check_held(fences: list[tuple[str, str]] | tuple[tuple[str, str], ...], what: str) -> None:
    """Raises :class:`LeaseLostError` unless every lease ``(uri, token)`` still holds its token.

    Args:
      fences: the launch's leases (:attr:`Lease.fence`).
      what: the step about to happen, for the message (``commit run nightly``).
    """
    for uri, token in fences:
        owner = read_until_known(uri, what)
        if owner is None or owner.get("token") != token:
            holder = "no one (deleted as stale)" if owner is None else describe(owner)
            raise LeaseLostError(
                f"cannot {what}: this launch lost its lease {uri} (now held by {holder}); "
                "it was paused past the lease's ttl, nothing was moved in"
            )


def read_until_known(uri: str, what: str) -> dict[str, Any] | None:
    """:func:`read_lease`, retried for :data:`UNKNOWN_WAIT_S` while the store fails to answer.

    Raises:
      LeaseUnknownError: still unknown after the wait (the message says that nothing was moved in).
    """
    deadline = time.monotonic() + UNKNOWN_WAIT_S
    for attempt in itertools.count():
        try:
            return read_lease(uri)
        except LeaseUnknownError as exc:
            pause = UNKNOWN_RETRY_S[min(attempt, len(UNKNOWN_RETRY_S) - 1)]
            if time.monotonic() + pause > deadline:
                raise LeaseUnknownError(
                    f"cannot {what}: whether this launch still holds its lease is unknown, the store did not "
                    f"answer for {UNKNOWN_WAIT_S:g} s: {exc}; nothing was moved in"
                ) from exc
            time.sleep(pause)
    raise AssertionError("unreachable")


def describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "a launch that is starting now"
    started = owner.get("started_at", "?")
    return f"attempt {owner.get('attempt')} (pid {owner.get('pid')} on {owner.get('host')}, started {started})"


def claim(root: str, name: str, *, run_id: str, attempt: str, detached: bool = False, what: str = "") -> Lease:
    """Takes the lease ``name`` under ``root`` or raises :class:`ClaimError` naming its live holder."""
    uri = lease_uri(root, name)
    owner = {
        "name": name,
        "run_id": run_id,
        "attempt": attempt,
        "token": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "heartbeat_at": time.time(),
        "ttl_s": DETACHED_TTL_S if detached else LEASE_TTL_S,
        "detached": detached,
    }
    if conditional(uri):
        return claim_conditional(uri, owner, what or name)
    for _ in range(3):
        if fs.create_exclusive(uri, json.dumps(owner)):
            return Lease(uri, owner)
        current = read_lease(uri)
        if is_live(current):
            raise ClaimError(f"{what or name} is held by {describe(current)}; lease {uri}")
        take_over(uri)
    raise ClaimError(f"{what or name}: could not take the stale lease {uri}")


def claim_conditional(uri: str, owner: dict[str, Any], what: str) -> Lease:
    """:func:`claim` on S3: a conditional create, else a takeover conditional on the stale version's ETag."""
    data = json.dumps(owner).encode("utf-8")
    for _ in range(3):
        etag = storage_for(uri).create_versioned(uri, data)
        if etag is not None:
            return Lease(uri, owner, etag)
        current = read_lease_version(uri)
        if current is None:
            continue  # deleted since: try the create again
        if is_live(current[0]):
            raise ClaimError(f"{what} is held by {describe(current[0])}; lease {uri}")
        etag = storage_for(uri).replace_if(uri, data, current[1])  # of two takers of one stale version, one wins
        if etag is not None:
            return Lease(uri, owner, etag)
    raise ClaimError(f"{what}: could not take the stale lease {uri}")


def remove_stale(uri: str) -> bool:
    """Deletes the lease at ``uri`` if its owner is dead (``runs clean``); True when it did.

    On S3 the delete is conditional on the version judged stale: a launch that took the lease
    over in between keeps it.
    """
    if conditional(uri):
        current = read_lease_version(uri)
        if current is None or current[0] is None or is_live(current[0]):
            return False
        return storage_for(uri).delete_if(uri, current[1])
    if is_live(read_lease(uri)):
        return False
    take_over(uri)
    return True


def remove_stale_leases(root: str) -> list[str]:
    """Deletes every lease under ``root`` whose owner is dead (:func:`remove_stale`); their URIs."""
    folder = fs.join(root, CLAIMS_DIR)
    uris = (fs.join(folder, name) for name in fs.list_dir(folder) if name.endswith(".json"))
    return [uri for uri in uris if remove_stale(uri)]


def take_over(uri: str) -> None:
    """Removes a stale lease; of two launches taking it over at once, one removes it, both retry."""
    if fs.is_remote(uri):
        fs.delete_file(uri)
        return
    grave = f"{uri}.stale-{uuid.uuid4().hex}"
    try:
        os.rename(uri, grave)  # atomic: only one of two concurrent takers moves this file
    except FileNotFoundError:
        return
    os.remove(grave)


def live_attempts(root: str) -> set[str]:
    """Attempts that hold a live lease under ``root`` (their staging must not be cleaned)."""
    live = set()
    folder = fs.join(root, CLAIMS_DIR)
    for name in fs.list_dir(folder):
        if name.endswith(".json"):
            owner = read_lease(fs.join(folder, name))
            if owner is not None and is_live(owner):
                live.add(owner.get("attempt"))
    return live
