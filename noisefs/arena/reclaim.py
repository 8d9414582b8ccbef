"""The one reclaim path of an owner that leaves the arena, departing or dead.

A *departing* owner is a handle that closes (``lifecycle.unregister_owner``, from
``Arena.close`` and at process exit). A *dead* owner is a process that died holding one;
``audit.gc`` finds it (``noisefs gc``, a handle that opens, a put waiting for room, the
daemon's police through ``Arena.gc``). Both go through :func:`reclaim_owner`, and both free
the same things: the shared free list, the owner's unfinished reservations, its lease and
the files under it, its foreign usage, its lock inode, lock file and row. They differ on
purpose in one thing: a departing owner's ready snapshots stay for a consumer (owner
NULL), a dead owner's are reclaimed. ``tests/test_arena_gc.py`` checks that what a clean
close frees, gc frees too.

Their transactions differ as well. A close is one transaction, and the lock file goes
only after it commits (a failed commit leaves a live owner with its lock). A dead owner
is reclaimed in transactions of at most ``GC_CHUNK_ROWS`` rows (diskcache culls the same
way), so writers interleave with a large reclaim; gc evicts the shared free list once,
after every dead owner it found (:func:`reclaim_free_list`). Every file is unlinked
before the row or lease that counts it goes, so the ledger never counts less than exists.
"""

from __future__ import annotations

import os

from noisefs.arena import ledger
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.admission import evict_free
from noisefs.arena.lease_keys import slot_prefix
from noisefs.arena.parts import ArenaParts
from noisefs.arena.paths import unlink_quiet
from noisefs.arena.rows import FileRow

GC_CHUNK_ROWS = 100  # rows per gc transaction: writers never wait for a whole reclaim


def listing(fd: int) -> dict[str, os.stat_result]:
    """The entries of the directory ``fd`` (not followed) and their stat."""
    out = {}
    for name in os.listdir(fd):
        try:
            out[name] = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
    return out


def drop_rows(parts: ArenaParts, conn, rows: list[FileRow], unlink: bool = True) -> None:
    """Delete ``rows``; each file is unlinked before its row goes."""
    for row in rows:
        state = snapshot_rows.state_of(conn, row.id)
        if state is None:
            continue
        where = parts.tier(row.tier)
        if unlink:
            where.unlink(row.slot)
        snapshot_rows.delete(conn, row.id)
        ledger.bump(conn, **where.counter_deltas(-row.alloc_bytes, -1))
        if state == "free":
            ledger.bump(conn, free_bytes=-row.alloc_bytes, free_files=-1)


def leased_files(parts: ArenaParts, conn, owner_id: int) -> list[tuple[str, int]]:
    """(slot, allocated bytes) of the tmpfs files made under ``owner_id``'s lease that have
    no row: its unpublished snapshots, partial writes and private free list."""
    prefix = slot_prefix(owner_id)
    known = snapshot_rows.slots_between(conn, parts.tmpfs.name, prefix, prefix + "~")
    out = []
    for name, st in listing(parts.tmpfs.fd()).items():
        if name.startswith(prefix) and name not in known:
            out.append((name, st.st_blocks * 512))
    return out


def drop_owner(
    parts: ArenaParts, conn, owner_id: int, lock_name: str, unlink_lock: bool = True
) -> None:
    """Remove an owner: its lock file, then its row and everything the row counts (its
    lock inode, its lease, its foreign usage). Its files must be gone already.

    ``unlink_lock=False`` (close): the caller unlinks the lock file after the commit, so a
    commit that fails (the ledger's filesystem full) leaves a live owner with its lock file."""
    found = owner_rows.charges(conn, owner_id)
    if found is None:
        return
    if unlink_lock:
        unlink_quiet(lock_name, parts.owners_fd)
    owner_rows.delete(conn, owner_id)
    ledger.bump(
        conn,
        owner_files=-1,
        lease_bytes=-found.lease_bytes,
        lease_files=-found.lease_files,
        foreign_bytes=-found.foreign_bytes,
        foreign_files=-found.foreign_files,
    )


def evict_shared_free_list(parts: ArenaParts, conn) -> None:
    """Unlink the whole shared free list, inside the caller's transaction. It keeps
    released files for reuse by live writers; once an owner leaves, its files there
    (named under its lease) would otherwise stay for as long as no handle closes."""
    parts.forget_slots(evict_free(conn, parts.tmpfs, 1 << 62, 1 << 62))


def reclaim_owner(
    parts: ArenaParts,
    owner_id: int,
    lock_name: str,
    *,
    departing: bool,
    report: dict | None = None,
    dry_run: bool = False,
) -> None:
    """Free what owner ``owner_id`` holds and remove it (see the module's docstring).

    ``departing`` (close): one transaction; the caller has closed the lease (its private
    free list unlinked, its pending snapshots published) and unlinks the lock file after
    the commit. Otherwise (a dead owner, gc): ``report``'s figures grow by what is
    reclaimed (``dry_run``: counted, nothing deleted)."""
    if report is None:
        report = {}
    if not departing:
        report["dead_owners"] += 1
        report["files"] += 1  # its lock file
    limit = -1 if departing or dry_run else GC_CHUNK_ROWS  # a dry run deletes nothing: one pass
    while True:
        with parts.ledger.transaction() as conn:
            if departing:
                evict_shared_free_list(parts, conn)
                rows = snapshot_rows.writing_of(conn, owner_id)
            else:  # its ready snapshots too: nobody will consume them
                rows = snapshot_rows.owned_not_free(conn, owner_id, limit)
                _count(parts, report, rows)
            if not dry_run:
                drop_rows(parts, conn, rows)
            if not dry_run and len(rows) == limit:
                continue  # commit this chunk; the next transaction takes the next one
            if departing:
                snapshot_rows.disown(conn, owner_id)  # its ready snapshots stay for a consumer
            else:
                unpublished = leased_files(parts, conn, owner_id)
                report["partial_files"] += len(unpublished)
                report["bytes"] += sum(n for _, n in unpublished)
                report["files"] += len(unpublished)
                if not dry_run:
                    for slot, _ in unpublished:  # files first, then the lease that counts them
                        parts.tmpfs.unlink(slot)
            if not dry_run:
                drop_owner(parts, conn, owner_id, lock_name, unlink_lock=not departing)
            return


def _count(parts: ArenaParts, report: dict, rows: list[FileRow]) -> None:
    report["partial_files"] += sum(1 for r in rows if r.state == "writing")
    report["snapshots"] += sum(1 for r in rows if r.state == "ready")
    report["bytes"] += sum(r.alloc_bytes for r in rows if parts.tier(r.tier).charged)
    report["files"] += sum(1 for r in rows if parts.tier(r.tier).charged)


def reclaim_free_list(parts: ArenaParts, report: dict, dry_run: bool) -> None:
    """gc's eviction of the shared free list, after the dead owners it reclaimed: what a
    departing owner's close does (:func:`reclaim_owner`), counted in ``report``."""
    with parts.ledger.transaction() as conn:
        files, alloc = snapshot_rows.free_totals(conn, parts.tmpfs.name)
        report["free_files"] += files
        report["bytes"] += alloc
        report["files"] += files
        if not dry_run:
            evict_shared_free_list(parts, conn)
