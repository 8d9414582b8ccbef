"""Queries and maintenance of an :class:`~noisefs.arena.store.Arena`: keys, info, figures,
check, gc, live owners, and the tier operations the daemon uses (move, cold keys, foreign
usage): the ``Queries`` part of a handle."""

from __future__ import annotations

import json

import numpy as np

from noisefs.arena import audit, ledger, owners
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena import move as moving
from noisefs.arena.access import Reader
from noisefs.arena.admission import Admission
from noisefs.arena.lease import Lease
from noisefs.arena.parts import ArenaParts
from noisefs.arena.paths import validate_index
from noisefs.errors import ArenaError


class Queries:
    """Keys, info, figures, check, gc, live owners, and the tier operations, for one handle."""

    def __init__(
        self, parts: ArenaParts, lease: Lease, admission: Admission, reader: Reader, rollback
    ) -> None:
        self._parts = parts
        self._lease = lease
        self._admission = admission
        self._reader = reader
        self._rollback = rollback  # the writer's: a failed move gives its placement back

    def live_owners(self) -> list[dict]:
        """Owners whose process holds its lock (or is starting); read-only probe.
        ``waiting``: the owner's put is waiting for room (backpressure)."""
        out = []
        for owner, waiting in owner_rows.all_with_waiting(self._parts.ledger.conn()):
            if owner.id == self._parts.owner.id or owners.is_live(
                self._parts.owners_fd, owner.lock_name, owner.pid, owner.started
            ):
                out.append(
                    {"id": owner.id, "pid": owner.pid, "started": owner.started,
                     "waiting": bool(waiting)}
                )  # fmt: skip
        return out

    def keys(self, run: str | None = None) -> list[str]:
        """Keys of ready snapshots (of ``run``), oldest first. Other processes' newest
        snapshots show up once published (``lease_publisher.PUBLISH_DELAY_S``)."""
        self._lease.flush()
        return snapshot_rows.ready_keys(self._parts.ledger.conn(), run)

    def info(self, key: str) -> dict:
        row = self._reader.row(key)
        if row is None or row.state != "ready":
            raise KeyError(key)
        return {
            "key": key,
            "run": row.run,
            "step": row.step,
            "batch": row.batch,
            "dtype": np.dtype(row.dtype),
            "shape": tuple(json.loads(row.shape)),
            "tier": row.tier,
            "slot": row.slot,  # its file's name in the tier's directory
            "nbytes": row.nbytes,
            "alloc_bytes": row.alloc_bytes,
            "owner": row.owner,
            "created": row.created,  # time.time() of the put: cold snapshots are the oldest
        }

    def move(self, key: str, tier: str = "spill") -> bool:
        """Move ready snapshot ``key`` to ``tier`` ('spill' or 'tmpfs'), keeping its key.

        Atomic in the ledger: readers see it whole in one tier or the other. False when it
        cannot move (no room in the target, the write there failed, or it was released
        meanwhile); it then stays where it was. True when it is (now) in ``tier``. Raises
        ``KeyError`` for an unknown key and ``CorruptSnapshot`` when its data does not
        verify (it is not moved)."""
        if self._parts.owner.id is None:
            raise ArenaError(f"arena {self._parts.root}: this handle is read-only (maintenance)")
        self._lease.flush()
        return moving.move(
            self._parts,
            self._admission,
            self._reader.row,
            self._rollback,
            key,
            self._parts.tier(tier),
        )

    def cold_keys(self, limit: int) -> list[str]:
        """Up to ``limit`` ready tmpfs snapshots, coldest (put longest ago) first: what to
        :meth:`move` to spill to make room on the tmpfs."""
        self._lease.flush()
        return moving.cold_keys(self._parts, limit)

    def set_foreign_usage(self, nbytes: int, nfiles: int) -> None:
        """Record that files this arena did not write (the daemon's inbox) occupy ``nbytes``
        and ``nfiles`` under the root. Admission counts them against the quota and
        ``max_files`` from now on; the record belongs to this handle's owner (each call
        replaces its previous figures) and goes when it closes or dies."""
        if self._parts.owner.id is None:
            raise ArenaError(f"arena {self._parts.root}: this handle is read-only (maintenance)")
        nbytes = validate_index("nbytes", nbytes)
        nfiles = validate_index("nfiles", nfiles)
        with self._parts.ledger.transaction() as conn:
            old = owner_rows.foreign_usage(conn, self._parts.owner.id)
            if old is None:
                raise ArenaError(f"arena {self._parts.root}: this handle's owner row is gone")
            old_bytes, old_files = old
            owner_rows.set_foreign_usage(conn, self._parts.owner.id, nbytes, nfiles)
            ledger.bump(conn, foreign_bytes=nbytes - old_bytes, foreign_files=nfiles - old_files)

    def stats(self) -> dict:
        self._lease.flush()
        return audit.figures(self._parts, self._parts.ledger.conn())

    def check(self, fix: bool = False) -> list[str]:
        """Compare ledger and files; ``fix=True`` repairs what can be repaired."""
        self._lease.flush()
        return audit.check(self._parts, self._lease, self._reader.get, fix=fix)

    def gc(self, dry_run: bool = False, unowned: bool = False) -> dict:
        """Reclaim what dead processes left; never a live owner's data. With ``unowned``,
        also drop ready snapshots that handles closed without consuming."""
        self._lease.flush()
        return audit.gc(self._parts, dry_run=dry_run, unowned=unowned)
