"""The SQLite ledger: which files exist, who owns them, what they cost.

The ledger repository is this module (the connection, transactions, counters, settings)
with :mod:`noisefs.arena.ledger_snapshots` and :mod:`noisefs.arena.ledger_owners` (the
statements on each table, as named functions returning typed rows): no other module of
noisefs holds SQL.

SQLite gives transactional, crash-safe accounting shared by any number of processes (a
hand-written fcntl-locked file would be a reinvention). Every state change is one
``BEGIN IMMEDIATE`` transaction; size and count totals are kept in ``counters`` by the
same transaction that changes rows (diskcache style), so admission is O(log n).
``synchronous=OFF``: the ledger lives on tmpfs, where power-loss durability means nothing;
a crashed process still leaves a consistent database (the rollback journal is written
before the database is touched).

Rollback journal (``journal_mode=PERSIST``), not WAL: with several processes reading and
writing all the time, WAL checkpoints are starved by overlapping readers and the WAL file
grew to 2 MB within seconds in the four-process test -- bytes under the root that the
quota must bound. A rollback journal never holds more than the original pages of one
transaction (so never more than the database itself) and is cut back to
``journal_size_limit`` after each one; PERSIST (invalidate the header instead of
truncating) measured 30 % cheaper per transaction than TRUNCATE. Readers briefly block
committers (busy_timeout covers it); every transaction here lasts microseconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time

from noisefs.errors import ArenaFull

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings(name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS owners(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    lock_name TEXT UNIQUE NOT NULL,
    started REAL NOT NULL,
    lease_bytes INTEGER NOT NULL DEFAULT 0,   -- reserved for files outside rows (see lease.py)
    lease_files INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,    -- of the lease: files that exist (last flush)
    used_files INTEGER NOT NULL DEFAULT 0,
    free_bytes INTEGER NOT NULL DEFAULT 0,    -- of those: its private free list (last flush)
    free_files INTEGER NOT NULL DEFAULT 0,
    published_seq INTEGER NOT NULL DEFAULT 0, -- lease keys up to this sequence are in rows
    waiting INTEGER NOT NULL DEFAULT 0,       -- 1 while a put of this owner waits for room
    foreign_bytes INTEGER NOT NULL DEFAULT 0, -- Arena.set_foreign_usage (the daemon's inbox)
    foreign_files INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshots(
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE,
    run TEXT, step INTEGER, batch INTEGER,
    tier TEXT NOT NULL,            -- 'tmpfs' | 'spill'
    slot TEXT NOT NULL,            -- file name in data/ (tmpfs) or in the spill dir
    alloc_bytes INTEGER NOT NULL,  -- what du charges for the file
    nbytes INTEGER, dtype TEXT, shape TEXT, checksum INTEGER,
    state TEXT NOT NULL,           -- 'writing' | 'ready' | 'free'
    owner INTEGER,                 -- owners.id, NULL once the owner closed cleanly
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_free_list ON snapshots(alloc_bytes)
    WHERE state = 'free' AND tier = 'tmpfs';
CREATE INDEX IF NOT EXISTS snapshots_writing ON snapshots(tier) WHERE state = 'writing';
"""
# Few, partial indexes: every page a transaction touches is written twice (journal and
# database), so an index is kept only where a hot path needs it. Scans by owner or run
# happen in gc, close and stats only.

# Totals kept current by every transaction. tmpfs_* count every data file under data/
# (writing, ready and free), free_* the free-list part of them, spill_* the spill tier.
COUNTERS = (
    "tmpfs_bytes",
    "tmpfs_files",
    "free_bytes",
    "free_files",
    "spill_bytes",
    "spill_files",
    "owner_files",
    "peak_bytes",
    "peak_files",
    "spilled_total_bytes",
    "spilled_total_files",
    "lease_bytes",
    "lease_files",
    "foreign_bytes",
    "foreign_files",
)
# columns added to ``owners`` after the first release: added to older ledgers on open
OWNER_COLUMNS = (
    "lease_bytes",
    "lease_files",
    "used_bytes",
    "used_files",
    "free_bytes",
    "free_files",
    "published_seq",
    "waiting",
    "foreign_bytes",
    "foreign_files",
)

DB_NAME = "ledger.db"
DB_FILES = (DB_NAME, DB_NAME + "-journal")


class Ledger:
    """One SQLite connection per thread per process, reopened when the pid changes."""

    def __init__(self, db_path: str, create: bool = True, shown: str | None = None) -> None:
        self.db_path = db_path
        self.shown = shown or db_path  # the path messages name (db_path may be /proc/self/fd/N/...)
        self._local = threading.local()
        self._create = create
        if create:
            _private_file(db_path)
        conn = self.conn()
        if create:
            # deleted rows' pages go back to the filesystem (gc runs incremental_vacuum), so
            # a burst of spilled snapshots does not leave the ledger large for good
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            with self.transaction() as c:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                self._upgrade(c)
        else:  # a maintenance handle changes nothing; a ledger of an older release is read as is
            have = {r[1] for r in conn.execute("PRAGMA table_info(owners)")}
            self.current = all(column in have for column in OWNER_COLUMNS)
        del conn

    current = True  # the owners table has every column of this release

    def upgrade(self) -> None:
        """Bring a ledger of an older release up to date (writers do it on open; ``gc`` of a
        maintenance handle before it writes)."""
        if not self.current:
            with self.transaction() as c:
                self._upgrade(c)

    def _upgrade(self, c: sqlite3.Connection) -> None:
        have = {r[1] for r in c.execute("PRAGMA table_info(owners)")}
        for column in OWNER_COLUMNS:
            if column not in have:
                c.execute(f"ALTER TABLE owners ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        c.executemany(
            "INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)",
            [(name,) for name in COUNTERS],
        )
        self.current = True

    def conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            uri = f"file:{self.db_path}?mode={'rwc' if self._create else 'rw'}"
            conn = sqlite3.connect(
                uri, uri=True, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = PERSIST")
            conn.execute("PRAGMA journal_size_limit = 262144")
            conn.execute("PRAGMA synchronous = OFF")
            local.conn = conn
            local.pid = os.getpid()
        return local.conn

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls back."""
        conn = self.conn()
        for attempt in range(200):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:  # busy beyond busy_timeout is rare
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.01 * (attempt + 1))
        else:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise ArenaFull(
                    f"the filesystem holding the arena ledger {self.shown} is full (another program "
                    "filled it); free some space there"
                ) from exc
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local = threading.local()


def _private_file(path: str) -> None:
    """Create the database (and fix an existing one) with mode 0600 before SQLite opens it:
    SQLite gives its journal the database file's mode."""
    for name in (path, path + "-journal"):
        flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if name == path else 0)
        try:
            fd = os.open(name, flags, 0o600)
        except FileNotFoundError:
            continue
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    values = dict.fromkeys(COUNTERS, 0)
    values.update(dict(conn.execute("SELECT name, value FROM counters")))
    return values


def bump(conn: sqlite3.Connection, **deltas: int) -> None:
    """Add ``deltas`` to the named counters in one statement."""
    items = [(name, delta) for name, delta in deltas.items() if delta]
    if not items:
        return
    cases = " ".join("WHEN ? THEN ?" for _ in items)
    params = [x for item in items for x in item] + [name for name, _ in items]
    conn.execute(
        f"UPDATE counters SET value = value + CASE name {cases} END "
        f"WHERE name IN ({','.join('?' for _ in items)})",
        params,
    )


def raise_peaks(conn: sqlite3.Connection, total_bytes: int, total_files: int) -> None:
    conn.execute(
        "UPDATE counters SET value = MAX(value, ?) WHERE name = 'peak_bytes'", (total_bytes,)
    )
    conn.execute(
        "UPDATE counters SET value = MAX(value, ?) WHERE name = 'peak_files'", (total_files,)
    )


def get_settings(conn: sqlite3.Connection) -> dict:
    return dict(conn.execute("SELECT name, value FROM settings"))


def put_settings(conn: sqlite3.Connection, values: dict) -> None:
    conn.executemany(
        "INSERT INTO settings(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def recompute_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """Totals from the rows themselves (used by ``check``)."""
    out = dict.fromkeys(
        ("tmpfs_bytes", "tmpfs_files", "free_bytes", "free_files", "spill_bytes", "spill_files"), 0
    )
    for tier, state, count, total in conn.execute(
        "SELECT tier, state, COUNT(*), COALESCE(SUM(alloc_bytes), 0) FROM snapshots GROUP BY tier, state"
    ):
        out[f"{tier}_bytes"] += total
        out[f"{tier}_files"] += count
        if tier == "tmpfs" and state == "free":
            out["free_bytes"] += total
            out["free_files"] += count
    try:
        owners, lb, lf, fb, ff = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(lease_bytes), 0), COALESCE(SUM(lease_files), 0), "
            "COALESCE(SUM(foreign_bytes), 0), COALESCE(SUM(foreign_files), 0) FROM owners"
        ).fetchone()
    except sqlite3.OperationalError:  # an older release's ledger: no leases, no foreign usage
        owners, lb, lf, fb, ff = conn.execute("SELECT COUNT(*), 0, 0, 0, 0 FROM owners").fetchone()
    out.update(
        owner_files=owners, lease_bytes=lb, lease_files=lf, foreign_bytes=fb, foreign_files=ff
    )
    return out


def set_counter(conn: sqlite3.Connection, name: str, value: int) -> None:
    """Set one counter (``check --fix``: to what the rows say)."""
    conn.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))


def incremental_vacuum(conn: sqlite3.Connection) -> None:
    """Give the pages of deleted rows back to the filesystem."""
    conn.execute("PRAGMA incremental_vacuum").fetchall()
