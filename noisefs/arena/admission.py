"""Placement of a new snapshot (or a lease), decided inside one ``BEGIN IMMEDIATE`` transaction.

Order: (1) recycle a free-list file of exactly the needed size (its pages already exist,
so nothing new is charged); (2) a new tmpfs file if the quota, ``max_files`` and the
tmpfs's own free bytes/inodes (minus headroom) allow, evicting free-list files first when
that makes it fit; (3) the spill tier if its bound allows; (4) otherwise ``None`` and the
caller waits (backpressure). Reservations are written before any file exists, so the
ledger is never below what ``du`` and ``find`` see. Every figure comes from
``accounting.charged``.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass

from noisefs.arena import accounting, ledger
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.accounting import META_SLACK, Metadata  # noqa: F401 - re-exported
from noisefs.arena.parts import ArenaParts
from noisefs.arena.rows import SnapshotMeta
from noisefs.arena.tiers import SPILL_KEEP_FREE, Tier  # noqa: F401 - re-exported

# what one transaction may add to the ledger (a row, its index entries, a split page), charged
# twice like the ledger itself: admission keeps this much room so the charged total stays
# within the quota after the transaction too
LEDGER_GROWTH = 2 * 8 * 4096
FREE_FRACTION = 0.25  # the free list keeps at most this share of the quota


@dataclass
class Placement:
    row_id: int | None  # None: a file under this process's lease (no ledger row yet)
    key: str
    tier: Tier
    slot: str
    alloc: int
    recycled: bool
    meta_row: SnapshotMeta | None = None
    seq: int | None = None  # under a lease: its sequence number (the key's suffix)
    inode: int | None = None  # the file's inode once made or found (the lease checks reuse)


def meta_bytes(root_fd: int) -> int:
    """The metadata allowance in bytes (see ``accounting.measure``)."""
    return accounting.measure(root_fd).bytes


def pending(conn: sqlite3.Connection, tier: Tier) -> tuple[int, int]:
    """Bytes and inodes reserved on ``tier`` that may not be allocated yet: rows being
    written, and the unused part of every lease (tmpfs)."""
    files, nbytes = snapshot_rows.writing_totals(conn, tier.name)
    if tier.charged:
        lb, lf = owner_rows.unused_leases(conn)
        nbytes, files = nbytes + lb, files + lf
    return int(nbytes), int(files)


def new_key(prefix: str, row_id: int) -> str:
    """``run:step:batch:<row id><24 random bits>``: unique among live keys (UNIQUE column);
    the random part keeps a released key from naming a later snapshot in a reused row."""
    return f"{prefix}:{row_id:x}{secrets.token_hex(3)}"


def insert_row(
    conn, key_prefix: str | None, meta: SnapshotMeta, tier: Tier, alloc: int, owner: int
):
    """A ``writing`` row on ``tier``; its key (None without ``key_prefix``: a move target
    gets its key when it is published) and slot."""
    row_id = snapshot_rows.insert_writing(conn, meta, tier.name, alloc, owner, time.time())
    key = new_key(key_prefix, row_id) if key_prefix is not None else None
    slot = tier.new_slot(row_id)
    snapshot_rows.name_row(conn, row_id, key, slot)
    return row_id, key, slot


def evict_free(
    conn: sqlite3.Connection, tmpfs: Tier, need_bytes: int, need_files: int
) -> list[str]:
    """Unlink free-list files (oldest first) until ``need_*`` are given back; return slots."""
    gone: list[str] = []
    freed_bytes = freed_files = 0
    for row in snapshot_rows.free_list(conn, tmpfs.name):
        if freed_bytes >= need_bytes and freed_files >= need_files:
            break
        tmpfs.unlink(row.slot)  # file first, row second: the ledger stays >= reality
        snapshot_rows.delete(conn, row.id)
        freed_bytes += row.alloc_bytes
        freed_files += 1
        gone.append(row.slot)
    ledger.bump(
        conn,
        **tmpfs.counter_deltas(-freed_bytes, -freed_files),
        free_bytes=-freed_bytes,
        free_files=-freed_files,
    )
    return gone


class Admission:
    """The rules of one arena handle; its methods run inside the caller's transaction."""

    def __init__(self, parts: ArenaParts) -> None:
        self._parts = parts

    def shortfall(
        self, conn, c: dict, meta: Metadata, nbytes: int, nfiles: int | None
    ) -> tuple[int, int]:
        """(bytes, inodes) missing for ``nbytes``/``nfiles`` more on the tmpfs: by the quota,
        ``max_files`` and the tmpfs's own room; <= 0 when it fits. ``nfiles=None``: only
        the ledger's own growth (a spilled snapshot's row), bound by the quota alone."""
        a = self._parts
        used_bytes, used_files = accounting.charged(c, meta)
        short_bytes = used_bytes + nbytes + LEDGER_GROWTH - a.bounds.quota_bytes
        if nfiles is None:
            return short_bytes, 0
        short_files = used_files + nfiles - a.bounds.max_files
        room_bytes, room_files = a.tmpfs.room(*pending(conn, a.tmpfs))
        return max(short_bytes, int(min(nbytes - room_bytes, 1 << 62))), max(
            short_files, int(min(nfiles - room_files, 1 << 62))
        )

    def make_room(self, conn, c: dict, meta: Metadata, nbytes: int, nfiles: int | None) -> bool:
        """Whether ``nbytes``/``nfiles`` more fit on the tmpfs, evicting free-list files
        when that is enough."""
        short_bytes, short_files = self.shortfall(conn, c, meta, nbytes, nfiles)
        if short_bytes <= 0 and short_files <= 0:
            return True
        if short_bytes > c["free_bytes"] or short_files > c["free_files"]:
            return False
        a = self._parts
        a.forget_slots(evict_free(conn, a.tmpfs, max(0, short_bytes), max(0, short_files)))
        return True

    def place(
        self,
        conn,
        alloc: int,
        meta_row: SnapshotMeta,
        key_prefix: str,
        allow_tmpfs: bool,
        preferred: set,
    ) -> Placement | None:
        a = self._parts
        if allow_tmpfs:
            rows = snapshot_rows.free_of_size(conn, alloc)
            if rows:
                found = next((r for r in rows if r.slot in preferred), rows[0])
                row_id, slot = found.id, found.slot
                key = new_key(key_prefix, row_id)
                # the row and its file are reused as they are: one UPDATE
                snapshot_rows.reuse_free(conn, row_id, key, meta_row, a.owner.id, time.time())
                ledger.bump(conn, free_bytes=-alloc, free_files=-1)
                return Placement(row_id, key, a.tmpfs, slot, alloc, True)
        # new bytes are about to be admitted: by the bounds stored now, which another
        # process may have changed since this handle opened (recycling needs no bounds)
        a.refresh_bounds(conn)
        meta = accounting.measure(a.root_fd)
        if allow_tmpfs:
            placement = self.new_file(conn, a.tmpfs, meta, alloc, meta_row, key_prefix)
            if placement is not None:
                return placement
        return self.new_file(conn, a.spill, meta, alloc, meta_row, key_prefix)

    def admit(self, conn, tier: Tier, meta: Metadata, alloc: int) -> bool:
        """Whether a new ``alloc``-byte file fits on ``tier`` now (freeing free-list files
        for it when that is enough)."""
        a = self._parts
        c = ledger.counters(conn)
        if tier.charged:
            return self.make_room(conn, c, meta, alloc, 1)
        if (
            a.bounds.spill_quota_bytes is not None
            and c["spill_bytes"] + alloc > a.bounds.spill_quota_bytes
        ):
            return False
        if a.spill_pause.active:
            return False
        # a spilled snapshot still adds a ledger row on the tmpfs: the ledger's growth must
        # fit the quota like everything else under the root
        if not self.make_room(conn, c, meta, 0, None):
            return False
        room_bytes, room_files = tier.room(*pending(conn, tier))
        return alloc <= room_bytes and room_files >= 1

    def new_file(
        self,
        conn,
        tier: Tier,
        meta: Metadata,
        alloc: int,
        meta_row: SnapshotMeta,
        key_prefix: str | None,
    ) -> Placement | None:
        """Reserve a new file on ``tier`` (a ``writing`` row), or None when it does not fit."""
        a = self._parts
        if not self.admit(conn, tier, meta, alloc):
            return None
        row_id, key, slot = insert_row(conn, key_prefix, meta_row, tier, alloc, a.owner.id)
        ledger.bump(conn, **tier.counter_deltas(alloc, 1))
        if tier.charged:
            ledger.raise_peaks(conn, *accounting.charged(ledger.counters(conn), meta))
        else:
            ledger.bump(conn, spilled_total_bytes=alloc, spilled_total_files=1)
        return Placement(row_id, key, tier, slot, alloc, False)
