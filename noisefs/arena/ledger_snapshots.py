"""The ledger's statements on ``snapshots``, one named function each, returning typed rows.

Part of the ledger repository (with :mod:`noisefs.arena.ledger` and
:mod:`noisefs.arena.ledger_owners`): no other module of noisefs holds SQL. Each function
runs one statement on the connection it is given, and never begins or commits: the
caller's ``with ledger.transaction() as conn:`` keeps every transaction boundary where
it is (reads outside a transaction pass ``ledger.conn()``).
"""

from __future__ import annotations

import sqlite3

from noisefs.arena.rows import FileRow, SnapshotMeta, SnapshotRow, Totals

SNAPSHOT_COLUMNS = ", ".join(SnapshotRow._fields)
FILE_COLUMNS = ", ".join(FileRow._fields)
# a new row's columns after ``key`` (the id is SQLite's), in SnapshotRow's order, and the
# placeholders for ``key`` and them
INSERT_COLUMNS = ", ".join(SnapshotRow._fields[1:])
INSERT_MARKS = ", ".join("?" * len(SnapshotRow._fields))

Conn = sqlite3.Connection

# -- reads ----------------------------------------------------------------------------------


def by_key(conn: Conn, key: str) -> SnapshotRow | None:
    found = conn.execute(
        f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE key = ?", (key,)
    ).fetchone()
    return None if found is None else SnapshotRow._make(found)


def file_by_key(conn: Conn, key: str) -> FileRow | None:
    found = conn.execute(f"SELECT {FILE_COLUMNS} FROM snapshots WHERE key = ?", (key,)).fetchone()
    return None if found is None else FileRow._make(found)


def is_ready(conn: Conn, key: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM snapshots WHERE key = ? AND state = 'ready'", (key,)).fetchone()
        is not None
    )


def state_of(conn: Conn, row_id: int) -> str | None:
    """The state of row ``row_id``; None when it is gone."""
    found = conn.execute("SELECT state FROM snapshots WHERE id = ?", (row_id,)).fetchone()
    return None if found is None else found[0]


def ready_keys(conn: Conn, run: str | None = None) -> list[str]:
    """Keys of ready snapshots (of ``run``), oldest ``created`` first."""
    if run is None:
        rows = conn.execute("SELECT key FROM snapshots WHERE state = 'ready' ORDER BY created, id")
    else:
        rows = conn.execute(
            "SELECT key FROM snapshots WHERE state = 'ready' AND run = ? ORDER BY created, id",
            (run,),
        )
    return [r[0] for r in rows]


def coldest_keys(conn: Conn, tier: str, limit: int) -> list[str]:
    """Up to ``limit`` ready snapshots on ``tier``, oldest ``created`` first."""
    rows = conn.execute(
        "SELECT key FROM snapshots WHERE state = 'ready' AND tier = ? ORDER BY created, id LIMIT ?",
        (tier, int(limit)),
    )
    return [r[0] for r in rows]


def ready_per_run(conn: Conn) -> dict:
    return dict(
        conn.execute("SELECT run, COUNT(*) FROM snapshots WHERE state = 'ready' GROUP BY run")
    )


def unowned_ready_count(conn: Conn) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM snapshots WHERE state = 'ready' AND owner IS NULL"
    ).fetchone()[0]


def slots_between(conn: Conn, tier: str, low: str, high: str) -> set[str]:
    """Slots on ``tier`` in ``[low, high)`` (the rows of one lease's files)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT slot FROM snapshots WHERE tier = ? AND slot >= ? AND slot < ?",
            (tier, low, high),
        )
    }


def all_files(conn: Conn) -> list[FileRow]:
    return [FileRow._make(r) for r in conn.execute(f"SELECT {FILE_COLUMNS} FROM snapshots")]


def owned_not_free(conn: Conn, owner: int, limit: int) -> list[FileRow]:
    """Up to ``limit`` (-1: all) rows of ``owner`` that are not on the free list, by id."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots "
            "WHERE owner = ? AND state != 'free' ORDER BY id LIMIT ?",
            (owner, limit),
        )
    ]


def writing_of(conn: Conn, owner: int) -> list[FileRow]:
    """``owner``'s unfinished reservations."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots WHERE owner = ? AND state = 'writing'",
            (owner,),
        )
    ]


def stray_writing(conn: Conn, before: float) -> list[FileRow]:
    """Writing rows older than ``before`` whose owner row is gone (a crash in gc)."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots WHERE state = 'writing' AND "
            "(owner IS NULL OR owner NOT IN (SELECT id FROM owners)) AND created < ?",
            (before,),
        )
    ]


def unowned_ready(conn: Conn) -> list[FileRow]:
    """Ready snapshots that handles closed without consuming."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots WHERE state = 'ready' AND owner IS NULL"
        )
    ]


def free_list(conn: Conn, tier: str) -> list[FileRow]:
    """The shared free list on ``tier``, oldest first."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots WHERE state = 'free' AND tier = ? ORDER BY id",
            (tier,),
        )
    ]


def free_of_size(conn: Conn, alloc: int) -> list[FileRow]:
    """Up to 16 tmpfs free-list rows of exactly ``alloc`` bytes."""
    return [
        FileRow._make(r)
        for r in conn.execute(
            f"SELECT {FILE_COLUMNS} FROM snapshots "
            "WHERE state = 'free' AND tier = 'tmpfs' AND alloc_bytes = ? LIMIT 16",
            (alloc,),
        )
    ]


def free_totals(conn: Conn, tier: str) -> Totals:
    return Totals._make(
        conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(alloc_bytes), 0) FROM snapshots "
            "WHERE state = 'free' AND tier = ?",
            (tier,),
        ).fetchone()
    )


def writing_totals(conn: Conn, tier: str) -> Totals:
    return Totals._make(
        conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(alloc_bytes), 0) FROM snapshots "
            "WHERE state = 'writing' AND tier = ?",
            (tier,),
        ).fetchone()
    )


# -- changes --------------------------------------------------------------------------------


def insert_writing(
    conn: Conn, meta: SnapshotMeta, tier: str, alloc: int, owner: int, now: float
) -> int:
    """A ``writing`` row with no key and no slot yet (``name_row`` gives them); its id."""
    run, step, batch, nbytes, dtype, shape = meta
    return conn.execute(
        "INSERT INTO snapshots(key, run, step, batch, tier, slot, alloc_bytes, nbytes, dtype, shape, "
        "state, owner, created) VALUES (NULL, ?, ?, ?, ?, '', ?, ?, ?, ?, 'writing', ?, ?)",
        (run, step, batch, tier, alloc, nbytes, dtype, shape, owner, now),
    ).lastrowid


def name_row(conn: Conn, row_id: int, key: str | None, slot: str) -> None:
    conn.execute("UPDATE snapshots SET key = ?, slot = ? WHERE id = ?", (key, slot, row_id))


def reuse_free(
    conn: Conn, row_id: int, key: str, meta: SnapshotMeta, owner: int, now: float
) -> None:
    """A free-list row and its file reused as they are for a new ``writing`` snapshot."""
    run, step, batch, nbytes, dtype, shape = meta
    conn.execute(
        "UPDATE snapshots SET key = ?, run = ?, step = ?, batch = ?, nbytes = ?, dtype = ?, "
        "shape = ?, checksum = NULL, state = 'writing', owner = ?, created = ? WHERE id = ?",
        (key, run, step, batch, nbytes, dtype, shape, owner, now, row_id),
    )


def insert_ready(conn: Conn, rows: list[tuple[str, SnapshotRow]]) -> None:
    """Rows for snapshots written under a lease: (key, its record) each."""
    conn.executemany(
        f"INSERT INTO snapshots(key, {INSERT_COLUMNS}) VALUES ({INSERT_MARKS})",
        [(key, *row[1:]) for key, row in rows],
    )


def mark_ready(conn: Conn, row_id: int, checksum: int) -> bool:
    """A written reservation becomes ready; False when it is no longer ``writing``."""
    cur = conn.execute(
        "UPDATE snapshots SET state = 'ready', checksum = ? WHERE id = ? AND state = 'writing'",
        (checksum, row_id),
    )
    return cur.rowcount == 1


def ready_moved(
    conn: Conn, row_id: int, key: str, checksum: int, owner: int | None, created: float
) -> None:
    """A move's target row takes the key, owner and creation time of the source."""
    conn.execute(
        "UPDATE snapshots SET key = ?, state = 'ready', checksum = ?, owner = ?, created = ? "
        "WHERE id = ?",
        (key, checksum, owner, created, row_id),
    )


def mark_free(conn: Conn, row_id: int) -> None:
    """A released snapshot's row and file go to the shared free list."""
    conn.execute(
        "UPDATE snapshots SET state = 'free', key = NULL, owner = NULL, run = NULL WHERE id = ?",
        (row_id,),
    )


def set_owner(conn: Conn, owner: int | None, keys: list[str]) -> None:
    conn.executemany("UPDATE snapshots SET owner = ? WHERE key = ?", [(owner, k) for k in keys])


def disown(conn: Conn, owner: int) -> None:
    """``owner``'s snapshots belong to nobody (they stay for a consumer)."""
    conn.execute("UPDATE snapshots SET owner = NULL WHERE owner = ?", (owner,))


def delete(conn: Conn, row_id: int) -> None:
    conn.execute("DELETE FROM snapshots WHERE id = ?", (row_id,))
