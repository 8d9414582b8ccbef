"""Placement of a new snapshot, decided inside one ``BEGIN IMMEDIATE`` transaction.

Order: (1) recycle a free-list file of exactly the needed size (its pages already exist,
so nothing new is charged); (2) a new tmpfs file if the quota, ``max_files`` and the
tmpfs's own free bytes/inodes (minus headroom) allow, evicting free-list files first when
that makes it fit; (3) the spill tier if its bound allows; (4) otherwise ``None`` and the
caller waits (backpressure). Reservations are written before any file exists, so the
ledger is never below what ``du`` and ``find`` see.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from dataclasses import dataclass

from noisefs.arena import ledger
from noisefs.arena.paths import allocated_bytes, unlink_quiet

META_INODES = 4  # data/, owners/, ledger.db, ledger.db-journal (counted even while absent)
META_SLACK = 512 * 1024  # ledger growth between two measurements (journal, new pages), dir blocks
# what one transaction may add to the ledger (a row, its index entries, a split page), charged
# twice like the ledger itself: admission keeps this much room so the charged total stays
# within the quota after the transaction too
LEDGER_GROWTH = 2 * 8 * 4096
FREE_FRACTION = 0.25  # the free list keeps at most this share of the quota
SPILL_KEEP_FREE = 0.05  # default spill bound: keep 5 % of that filesystem free


@dataclass
class Placement:
    row_id: int
    key: str
    tier: str  # 'tmpfs' | 'spill'
    slot: str
    alloc: int
    recycled: bool


def meta_bytes(root_fd: int) -> int:
    """The metadata allowance: the measured ledger, room for a rollback journal as large
    as the ledger itself (a transaction can touch every page: gc, close), plus a slack."""
    db, journal = (allocated_bytes(name, root_fd) for name in ledger.DB_FILES)
    return db + max(db, journal) + META_SLACK


def tmpfs_headroom(st: os.statvfs_result) -> tuple[int, int]:
    total_bytes = st.f_blocks * st.f_frsize
    byte_room = max(256 * 1024, min(64 << 20, total_bytes // 50))
    inode_room = max(2, min(1024, st.f_files // 10))
    return byte_room, inode_room


def _pending_writes(conn: sqlite3.Connection, tier: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(alloc_bytes), 0) FROM snapshots WHERE state = 'writing' AND tier = ?",
        (tier,),
    ).fetchone()
    return int(row[1]), int(row[0])


def fs_room(fd: int, conn: sqlite3.Connection, tier: str) -> tuple[float, float, int]:
    """(bytes, inodes) still admissible on the filesystem of ``fd``; inf when unlimited."""
    st = os.fstatvfs(fd)
    pending_bytes, pending_files = _pending_writes(conn, tier)
    total = st.f_blocks * st.f_frsize
    if tier == "tmpfs":
        byte_room, inode_room = tmpfs_headroom(st)
        byte_room += META_SLACK  # the ledger's own growth lands on this filesystem too
    else:
        byte_room, inode_room = int(total * SPILL_KEEP_FREE), 1
    room_bytes = (
        float("inf") if st.f_blocks == 0 else st.f_bavail * st.f_frsize - byte_room - pending_bytes
    )
    room_files = float("inf") if st.f_files == 0 else st.f_favail - inode_room - pending_files
    return room_bytes, room_files, total


def _new_key(prefix: str, row_id: int) -> str:
    """``run:step:batch:<row id><24 random bits>``: unique among live keys (UNIQUE column);
    the random part keeps a released key from naming a later snapshot in a reused row."""
    return f"{prefix}:{row_id:x}{secrets.token_hex(3)}"


def _insert(
    conn,
    key_prefix: str,
    meta: tuple,
    tier: str,
    slot: str | None,
    alloc: int,
    owner: int,
    spill_tag: str = "",
):
    run, step, batch, nbytes, dtype, shape = meta
    now = time.time()
    cur = conn.execute(
        "INSERT INTO snapshots(key, run, step, batch, tier, slot, alloc_bytes, nbytes, dtype, shape, "
        "state, owner, created) VALUES (NULL, ?, ?, ?, ?, '', ?, ?, ?, ?, 'writing', ?, ?)",
        (run, step, batch, tier, alloc, nbytes, dtype, shape, owner, now),
    )
    row_id = cur.lastrowid
    key = _new_key(key_prefix, row_id)
    if not slot:
        slot = f"{row_id:08x}-{secrets.token_hex(4)}.snap"
        if tier == "spill":  # a spill dir may be shared: tag files with their arena
            slot = f"{spill_tag}-{slot}"
    conn.execute("UPDATE snapshots SET key = ?, slot = ? WHERE id = ?", (key, slot, row_id))
    return row_id, key, slot


def evict_free(
    conn: sqlite3.Connection, data_fd: int, need_bytes: int, need_files: int
) -> list[str]:
    """Unlink free-list files (oldest first) until ``need_*`` are given back; return slots."""
    gone: list[str] = []
    freed_bytes = freed_files = 0
    rows = conn.execute(
        "SELECT id, slot, alloc_bytes FROM snapshots WHERE state = 'free' AND tier = 'tmpfs' ORDER BY id"
    ).fetchall()
    for row_id, slot, alloc in rows:
        if freed_bytes >= need_bytes and freed_files >= need_files:
            break
        unlink_quiet(slot, data_fd)  # file first, row second: the ledger stays >= reality
        conn.execute("DELETE FROM snapshots WHERE id = ?", (row_id,))
        freed_bytes += alloc
        freed_files += 1
        gone.append(slot)
    ledger.bump(
        conn,
        tmpfs_bytes=-freed_bytes,
        tmpfs_files=-freed_files,
        free_bytes=-freed_bytes,
        free_files=-freed_files,
    )
    return gone


class Admission:
    """The rules of one arena handle; ``place`` runs inside the caller's transaction."""

    def __init__(self, arena) -> None:
        self.arena = arena

    def charged(self, c: dict, meta: int) -> tuple[int, int]:
        return c["tmpfs_bytes"] + meta, c["tmpfs_files"] + c["owner_files"] + META_INODES

    def place(
        self, conn, alloc: int, meta_row: tuple, key_prefix: str, allow_tmpfs: bool, preferred: set
    ) -> Placement | None:
        a = self.arena
        if allow_tmpfs:
            rows = conn.execute(
                "SELECT id, slot FROM snapshots WHERE state = 'free' AND tier = 'tmpfs' AND alloc_bytes = ? LIMIT 16",
                (alloc,),
            ).fetchall()
            if rows:
                row_id, slot = next((r for r in rows if r[1] in preferred), rows[0])
                key = _new_key(key_prefix, row_id)
                run, step, batch, nbytes, dtype, shape = meta_row
                conn.execute(  # the row and its file are reused as they are: one UPDATE
                    "UPDATE snapshots SET key = ?, run = ?, step = ?, batch = ?, nbytes = ?, dtype = ?, "
                    "shape = ?, checksum = NULL, state = 'writing', owner = ?, created = ? WHERE id = ?",
                    (key, run, step, batch, nbytes, dtype, shape, a._owner_id, time.time(), row_id),
                )
                ledger.bump(conn, free_bytes=-alloc, free_files=-1)
                return Placement(row_id, key, "tmpfs", slot, alloc, True)
        # new bytes are about to be admitted: by the bounds stored now, which another
        # process may have changed since this handle opened (recycling needs no bounds)
        a._refresh_settings(conn)
        if allow_tmpfs:
            c = ledger.counters(conn)
            placement = self._new_tmpfs(
                conn, c, meta_bytes(a._root_fd), alloc, meta_row, key_prefix
            )
            if placement is not None:
                return placement
        return self._spill(conn, ledger.counters(conn), alloc, meta_row, key_prefix)

    def _new_tmpfs(self, conn, c, meta, alloc, meta_row, key_prefix) -> Placement | None:
        a = self.arena
        used_bytes, used_files = self.charged(c, meta)
        short_bytes = used_bytes + alloc + LEDGER_GROWTH - a.quota_bytes
        short_files = used_files + 1 - a.max_files
        room_bytes, room_files, _ = fs_room(a._root_fd, conn, "tmpfs")
        short_bytes = max(short_bytes, alloc - room_bytes)
        short_files = max(short_files, 1 - room_files)
        if short_bytes > 0 or short_files > 0:
            if short_bytes > c["free_bytes"] or short_files > c["free_files"]:
                return None
            gone = evict_free(conn, a._data_fd, max(0, short_bytes), max(0, int(short_files)))
            a._forget_slots(gone)
            c = ledger.counters(conn)
        row_id, key, slot = _insert(conn, key_prefix, meta_row, "tmpfs", None, alloc, a._owner_id)
        ledger.bump(conn, tmpfs_bytes=alloc, tmpfs_files=1)
        total_bytes, total_files = self.charged(c, meta)
        ledger.raise_peaks(conn, total_bytes + alloc, total_files + 1)
        return Placement(row_id, key, "tmpfs", slot, alloc, False)

    def _spill(self, conn, c, alloc, meta_row, key_prefix) -> Placement | None:
        a = self.arena
        if a.spill_quota_bytes is not None and c["spill_bytes"] + alloc > a.spill_quota_bytes:
            return None
        if a._spill_blocked_until > time.monotonic():
            return None
        # a spilled snapshot still adds a ledger row on the tmpfs: the ledger's growth must
        # fit the quota like everything else under the root
        over = self.charged(c, meta_bytes(a._root_fd))[0] + LEDGER_GROWTH - a.quota_bytes
        if over > 0:
            if over > c["free_bytes"]:
                return None
            a._forget_slots(evict_free(conn, a._data_fd, over, 0))
            c = ledger.counters(conn)
        spill_fd = a._spill_fd(create=True)
        room_bytes, room_files, _ = fs_room(spill_fd, conn, "spill")
        if alloc > room_bytes or room_files < 1:
            return None
        row_id, key, slot = _insert(
            conn, key_prefix, meta_row, "spill", None, alloc, a._owner_id, a.spill_tag
        )
        ledger.bump(
            conn, spill_bytes=alloc, spill_files=1, spilled_total_bytes=alloc, spilled_total_files=1
        )
        return Placement(row_id, key, "spill", slot, alloc, False)
