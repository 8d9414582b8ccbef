"""The ledger's statements on ``owners``, one named function each, returning typed rows.

Part of the ledger repository (with :mod:`noisefs.arena.ledger` and
:mod:`noisefs.arena.ledger_snapshots`): each function runs one statement on the
connection it is given and never begins or commits; the caller's transaction stays where
it is.
"""

from __future__ import annotations

import sqlite3

from noisefs.arena.rows import LeaseUsage, OwnerCharges, OwnerRow, Pressure

OWNER_COLUMNS = ", ".join(OwnerRow._fields)

Conn = sqlite3.Connection

# -- reads ----------------------------------------------------------------------------------


def all_owners(conn: Conn) -> list[OwnerRow]:
    return [OwnerRow._make(r) for r in conn.execute(f"SELECT {OWNER_COLUMNS} FROM owners")]


def all_with_waiting(conn: Conn) -> list[tuple[OwnerRow, bool]]:
    """Every owner, and whether a put of it waits for room."""
    return [
        (OwnerRow._make(r[:-1]), bool(r[-1]))
        for r in conn.execute(f"SELECT {OWNER_COLUMNS}, waiting FROM owners")
    ]


def ids(conn: Conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM owners")]


def lock_names(conn: Conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT lock_name FROM owners")}


def exists(conn: Conn, owner: int) -> bool:
    return conn.execute("SELECT 1 FROM owners WHERE id = ?", (owner,)).fetchone() is not None


def publication(conn: Conn, owner: int) -> tuple[int, OwnerRow] | None:
    """(``published_seq``, the owner) of ``owner``; None when it is gone."""
    found = conn.execute(
        f"SELECT published_seq, {OWNER_COLUMNS} FROM owners WHERE id = ?", (owner,)
    ).fetchone()
    return None if found is None else (found[0], OwnerRow._make(found[1:]))


def charges(conn: Conn, owner: int) -> OwnerCharges | None:
    found = conn.execute(
        "SELECT lease_bytes, lease_files, foreign_bytes, foreign_files FROM owners WHERE id = ?",
        (owner,),
    ).fetchone()
    return None if found is None else OwnerCharges._make(found)


def lease_usage(conn: Conn) -> LeaseUsage:
    return LeaseUsage._make(
        conn.execute(
            "SELECT COALESCE(SUM(used_bytes), 0), COALESCE(SUM(used_files), 0), "
            "COALESCE(SUM(free_bytes), 0), COALESCE(SUM(free_files), 0) FROM owners"
        ).fetchone()
    )


def unused_leases(conn: Conn) -> tuple[int, int]:
    """(bytes, inodes) leased by every owner and not used by a file yet."""
    lb, lf = conn.execute(
        "SELECT COALESCE(SUM(MAX(lease_bytes - used_bytes, 0)), 0), "
        "COALESCE(SUM(MAX(lease_files - used_files, 0)), 0) FROM owners"
    ).fetchone()
    return lb, lf


def waiters(conn: Conn, owner: int) -> int:
    """How many owners other than ``owner`` have a put waiting for room."""
    return conn.execute(
        "SELECT COUNT(*) FROM owners WHERE waiting > 0 AND id != ?", (owner,)
    ).fetchone()[0]


def pressure(conn: Conn, owner: int) -> Pressure:
    return Pressure._make(
        conn.execute(
            "SELECT (SELECT COUNT(*) FROM owners WHERE waiting > 0 AND id != ?), "
            "(SELECT SUM(value) FROM counters WHERE name IN ('tmpfs_bytes', 'lease_bytes', 'foreign_bytes')), "
            "(SELECT SUM(value) FROM counters WHERE name IN ('tmpfs_files', 'lease_files', 'foreign_files', 'owner_files')), "
            "(SELECT value FROM settings WHERE name = 'quota_bytes'), "
            "(SELECT value FROM settings WHERE name = 'max_files')",
            (owner,),
        ).fetchone()
    )


def foreign_usage(conn: Conn, owner: int) -> tuple[int, int] | None:
    """(``foreign_bytes``, ``foreign_files``) of ``owner``; None when it is gone."""
    found = conn.execute(
        "SELECT foreign_bytes, foreign_files FROM owners WHERE id = ?", (owner,)
    ).fetchone()
    return None if found is None else (found[0], found[1])


# -- changes --------------------------------------------------------------------------------


def insert(conn: Conn, pid: int, lock_name: str, started: float) -> int:
    """A new owner row; its id."""
    return conn.execute(
        "INSERT INTO owners(pid, lock_name, started) VALUES (?, ?, ?)", (pid, lock_name, started)
    ).lastrowid


def delete(conn: Conn, owner: int) -> None:
    conn.execute("DELETE FROM owners WHERE id = ?", (owner,))


def set_waiting(conn: Conn, owner: int, flag: bool) -> None:
    conn.execute("UPDATE owners SET waiting = ? WHERE id = ?", (int(flag), owner))


def set_foreign_usage(conn: Conn, owner: int, nbytes: int, nfiles: int) -> None:
    conn.execute(
        "UPDATE owners SET foreign_bytes = ?, foreign_files = ? WHERE id = ?",
        (nbytes, nfiles, owner),
    )


def set_lease(conn: Conn, owner: int, lease_bytes: int, lease_files: int) -> None:
    conn.execute(
        "UPDATE owners SET lease_bytes = ?, lease_files = ? WHERE id = ?",
        (lease_bytes, lease_files, owner),
    )


def set_lease_figures(
    conn: Conn, owner: int, lease: tuple[int, int], used: tuple[int, int],
    free: tuple[int, int], published: int,
) -> None:  # fmt: skip
    """The owner row's lease, used and free (bytes, files) and its ``published_seq``."""
    conn.execute(
        "UPDATE owners SET lease_bytes = ?, lease_files = ?, used_bytes = ?, used_files = ?, "
        "free_bytes = ?, free_files = ?, published_seq = ? WHERE id = ?",
        (*lease, *used, *free, published, owner),
    )
