"""The ledger's rows as typed records: no positional index outside this module."""

from __future__ import annotations

from typing import NamedTuple


class SnapshotRow(NamedTuple):
    """One ``snapshots`` row (or a lease's pending record of one, ``id`` None)."""

    id: int | None
    tier: str
    slot: str
    alloc_bytes: int
    nbytes: int
    dtype: str
    shape: str  # JSON list
    checksum: int  # signed 64-bit (SQLite's integer)
    state: str  # 'writing' | 'ready' | 'free'
    run: str | None
    step: int | None
    batch: int | None
    owner: int | None
    created: float

    @property
    def unsigned_checksum(self) -> int:
        return self.checksum + (1 << 64) if self.checksum < 0 else self.checksum

    @property
    def header_fields(self) -> tuple:
        """What a snapshot file's header records of its row (see ``snapfile``)."""
        return (self.nbytes, self.dtype, self.shape, self.checksum)


class SnapshotMeta(NamedTuple):
    """What a put records of its array in a new row: where it belongs and its shape."""

    run: str | None
    step: int | None
    batch: int | None
    nbytes: int
    dtype: str
    shape: str  # JSON list


class FileRow(NamedTuple):
    """A ``snapshots`` row as gc, close, release and the free list see it: its file and
    what the file costs."""

    id: int
    tier: str
    slot: str
    alloc_bytes: int
    state: str  # 'writing' | 'ready' | 'free'
    key: str | None = None


def signed_checksum(check: int) -> int:
    """A 64-bit checksum as SQLite stores it (signed)."""
    return check - (1 << 64) if check >= 1 << 63 else check


class OwnerRow(NamedTuple):
    """One ``owners`` row, as liveness probes read it."""

    id: int
    pid: int
    lock_name: str
    started: float


class OwnerCharges(NamedTuple):
    """What an owner row counts beside its lock inode: its lease and its foreign usage."""

    lease_bytes: int
    lease_files: int
    foreign_bytes: int
    foreign_files: int


class LeaseUsage(NamedTuple):
    """Every owner's lease use together (last flush): files that exist, and of those the
    private free lists."""

    used_bytes: int
    used_files: int
    free_bytes: int
    free_files: int


class Totals(NamedTuple):
    """A count of files and their allocated bytes."""

    files: int
    nbytes: int


class Pressure(NamedTuple):
    """What a lease holder reads to decide whether to give back (one query)."""

    waiters: int  # other owners whose put waits for room
    charged_bytes: int | None  # tmpfs + leases + foreign (counters; metadata not included)
    charged_files: int | None  # tmpfs + leases + foreign + owner lock files
    quota_bytes: int | None  # the stored bounds (None: not stored)
    max_files: int | None
