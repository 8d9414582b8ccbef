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


SNAPSHOT_COLUMNS = ", ".join(SnapshotRow._fields)
# a new row's columns after ``key`` (the id is SQLite's), in SnapshotRow's order, and the
# placeholders for ``key`` and them
INSERT_COLUMNS = ", ".join(SnapshotRow._fields[1:])
INSERT_MARKS = ", ".join("?" * len(SnapshotRow._fields))


def signed_checksum(check: int) -> int:
    """A 64-bit checksum as SQLite stores it (signed)."""
    return check - (1 << 64) if check >= 1 << 63 else check


class OwnerRow(NamedTuple):
    """One ``owners`` row, as liveness probes read it."""

    id: int
    pid: int
    lock_name: str
    started: float


OWNER_COLUMNS = ", ".join(OwnerRow._fields)
