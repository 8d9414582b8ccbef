"""Registering an ``Arena`` handle as an owner, and unregistering it on ``close``.

An owner is one row in ``owners`` plus one lock file in ``owners/`` (an inode charged
against ``max_files``, reserved in the ledger before the file is made). ``close`` unlinks
the free list, drops this handle's unfinished reservations, hands its ready snapshots to
nobody (they stay until released or adopted) and removes the lock file, then its row.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import time
import weakref

from noisefs.arena import accounting, ledger, owners
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena.admission import evict_free
from noisefs.arena.parts import ArenaParts
from noisefs.arena.paths import unlink_quiet
from noisefs.arena.reclaim import reclaim_owner
from noisefs.errors import ArenaFull

log = logging.getLogger("noisefs.arena")

_open_handles: weakref.WeakSet = weakref.WeakSet()
_finalizer_pid = 0


def _close_all() -> None:
    """Close this process's handles that are still open when it exits normally (so a
    worker that simply exits hands its snapshots over instead of looking crashed)."""
    for arena in list(_open_handles):
        if arena.parts.pid == os.getpid():
            try:
                arena.close()
            except Exception:  # noqa: BLE001 - exiting; gc reclaims whatever is left
                log.debug("closing %r at exit failed", arena, exc_info=True)


atexit.register(_close_all)


def track(arena) -> None:
    """Remember an open handle: closed at exit, and found by :func:`local_handles`."""
    global _finalizer_pid
    _open_handles.add(arena)
    if _finalizer_pid != os.getpid():  # forked children exit through multiprocessing, not atexit
        multiprocessing.util.Finalize(None, _close_all, exitpriority=10)
        _finalizer_pid = os.getpid()


def local_handles() -> list:
    """The open handles of this process (any arena)."""
    return [a for a in list(_open_handles) if a.parts.pid == os.getpid() and not a.closed]


def register_owner(parts: ArenaParts, timeout_s: float) -> None:
    """Make the handle of ``parts`` an owner: its row, then its lock file (waiting up to
    ``timeout_s`` for an inode to make it)."""
    name = owners.new_lock_name()
    deadline = time.monotonic() + timeout_s
    while True:
        with parts.ledger.transaction() as conn:
            c = ledger.counters(conn)
            meta = accounting.measure(parts.root_fd)
            _, used_files = accounting.charged(c, meta)
            short = used_files + 1 - parts.bounds.max_files
            if 0 < short <= c["free_files"]:
                parts.forget_slots(evict_free(conn, parts.tmpfs, 0, short))
                short = 0
            if short <= 0:
                owner_id = owner_rows.insert(conn, os.getpid(), name, time.time())
                ledger.bump(conn, owner_files=1)
                ledger.raise_peaks(conn, *accounting.charged(ledger.counters(conn), meta))
                break
        if time.monotonic() > deadline:
            raise ArenaFull(
                f"arena {parts.root}: no inode left for this process's lock file "
                f"(max_files {parts.bounds.max_files}); release snapshots or raise --max-files",
                needed_bytes=0,  # an inode, no bytes
            )
        time.sleep(0.05)
    try:
        parts.owner.lock_fd = owners.create_lock(parts.owners_fd, name)
    except BaseException:
        with parts.ledger.transaction() as conn:  # give the reserved inode back
            unlink_quiet(name, parts.owners_fd)
            owner_rows.delete(conn, owner_id)
            ledger.bump(conn, owner_files=-1)
        raise
    with parts.ledger.transaction() as conn:
        if not owner_rows.exists(conn, owner_id):
            # stalled past the start-up grace between row and lock file, another process's
            # gc took this owner for dead: register again, now that the lock is held
            owner_id = owner_rows.insert(conn, os.getpid(), name, time.time())
            ledger.bump(conn, owner_files=1)
    parts.owner.id = owner_id
    parts.owner.lock_name = name


def unregister_owner(parts: ArenaParts, timeout_s: float = 0.0, before=None) -> None:
    """Close through the one reclaim path (``reclaim.reclaim_owner``, which gc takes for a
    dead owner): the shared free list goes, unfinished reservations go, ready snapshots
    stay for a consumer, the owner goes (one transaction).

    ``before`` (the lease's close) runs first, inside the same retries. A ledger whose
    filesystem is full (``ArenaFull`` from a commit) is tried again for up to ``timeout_s``
    (backpressure: another program may free space), then the ``ArenaFull`` is raised with
    the owner registered and its lock file in place: the caller keeps the lock held, so
    the live process never looks dead to gc. The lock file goes only after the commit."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if before is not None:
                before()
            reclaim_owner(parts, parts.owner.id, parts.owner.lock_name, departing=True)
            break
        except ArenaFull:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    unlink_quiet(parts.owner.lock_name, parts.owners_fd)
