"""The read side of an :class:`~noisefs.arena.store.Arena`: looking keys up (ledger rows or
this handle's unpublished ones), verified reads, release and adoption: the ``Reader``
part, given the handle's shared parts and its lease."""

from __future__ import annotations

import json

import numpy as np

from noisefs.arena import lease_keys, ledger, reclaim, tiers, views
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.admission import FREE_FRACTION
from noisefs.arena.lease import Lease
from noisefs.arena.lifecycle import local_handles
from noisefs.arena.parts import ArenaParts
from noisefs.arena.rows import SnapshotRow
from noisefs.errors import CorruptSnapshot, InputError


class Reader:
    """Looking keys up, verified reads, release and adoption, for one handle."""

    def __init__(self, parts: ArenaParts, lease: Lease) -> None:
        self._parts = parts
        self._lease = lease

    def row(self, key: str, conn=None) -> SnapshotRow | None:
        """The ledger row of ``key`` (or, unpublished, this handle's own record of it)."""
        pending = self._lease.row(key)
        if pending is not None:
            return pending
        return snapshot_rows.by_key(conn or self._parts.ledger.conn(), key)

    def get(self, key: str) -> np.ndarray:
        """A read-only array (memory-mapped) of snapshot ``key``; its checksum is verified.

        Raises ``KeyError`` for a key that does not exist (or was released meanwhile) and
        ``CorruptSnapshot`` when the stored bytes do not verify.
        """
        view = self._read(key, lambda tier, row: tier.read(key, row))
        views.track(self._parts.identity, key, view)
        return view

    def read_into(self, key: str, out: np.ndarray) -> np.ndarray:
        """Copy snapshot ``key`` into ``out`` (C-contiguous, its dtype and shape), verifying
        each 512 KiB block right after copying it: one pass instead of the two of ``get``
        followed by a copy. Raises like :meth:`get`; after ``CorruptSnapshot`` the contents
        of ``out`` are undefined and must not be used (nothing unverified is returned).
        Returns ``out``. Against ``get`` + ``np.copyto`` on the loaded 2-core development
        machine: 1.2x faster at 16-64 MiB in one run, 0.74x in another, 0.86-0.94x at
        1 MiB and below (a 512 KiB block barely fits its 512 KiB L2 once copied)."""
        if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
            raise InputError("read_into needs a writable C-contiguous numpy array")

        def copy(tier, row):
            if out.dtype.str != row.dtype or list(out.shape) != json.loads(row.shape):
                raise InputError(
                    f"snapshot {key} is {row.dtype} {tuple(json.loads(row.shape))}, not "
                    f"{out.dtype.str} {out.shape}"
                )
            flat = out.reshape(-1).view(np.uint8) if out.nbytes else np.empty(0, np.uint8)
            tiers.read_into(tier, key, row, flat)
            return out

        return self._read(key, copy)

    def _read(self, key: str, how):
        """Look ``key`` up and read it with ``how(tier, row)``; when the file does not
        verify, look again: a snapshot moved to another tier (or released) meanwhile is
        read from where it is now (or is a ``KeyError``)."""
        seen, waited = None, False
        while True:
            row = self.row(key)
            if row is None and not waited:
                waited = True
                if self._await_published(key):
                    continue
            if row is None or row.state != "ready":
                raise KeyError(key)
            try:
                return how(self._parts.tier(row.tier), row)
            except CorruptSnapshot:
                where = (row.id, row.tier, row.slot)
                if where == seen:  # read twice from the same row: the data is damaged
                    raise
                seen = where

    def _await_published(self, key: str) -> bool:
        """For a lease key of another owner: wait until that owner has published it; True
        when the key should be looked up again (see lease.py)."""
        found = lease_keys.parse_key(key)
        if found is None or found[0] == self._parts.owner.id:
            return False
        owner, seq = found
        for other in local_handles():  # a handle of this very process: ask it
            if (
                other.parts is not self._parts
                and other.parts.identity == self._parts.identity
                and other.parts.owner.id == owner
            ):
                other.publish()
                return True
        return lease_keys.await_published(
            self._parts.ledger.conn(), self._parts.owners_fd, owner, seq
        )

    def release(self, key: str) -> None:
        """Free snapshot ``key``: its file joins the free list (recycled) or is unlinked."""
        live = views.held(self._parts.identity, key)
        if self._lease.release(key, live):
            return
        for attempt in range(2):
            if self._release_row(key, live):
                return
            if attempt or not self._await_published(key):
                raise KeyError(key)

    def _release_row(self, key: str, live: bool) -> bool:
        with self._lease.lock:  # taken before the transaction (lease.py's lock order)
            taken = None
            with self._parts.ledger.transaction() as conn:
                found = self._release_in(conn, key, live)
                if callable(found):
                    taken = found
            if taken is not None:
                taken()  # committed: the file is back on this lease's free list
                return True
            return bool(found)

    def _release_in(self, conn, key: str, live: bool):
        row = snapshot_rows.file_by_key(conn, key)
        if row is None or row.state != "ready":
            return False
        row_id, tier, slot, alloc = row.id, row.tier, row.slot, row.alloc_bytes
        if not live and self._parts.tier(tier).recycles:  # a published file of this lease?
            taken = self._lease.take_back(conn, row_id, slot, alloc)
            if taken is not None:
                return taken
        c = ledger.counters(conn)
        if (
            self._parts.tier(tier).recycles
            and not live
            and c["free_bytes"] + self._lease.free_bytes + alloc
            <= self._parts.bounds.quota_bytes * FREE_FRACTION
        ):
            snapshot_rows.mark_free(conn, row_id)
            ledger.bump(conn, free_bytes=alloc, free_files=1)
            return True
        reclaim.drop_rows(self._parts, conn, [row])
        return True

    def adopt(self, keys) -> None:
        """Make this handle the owner of ready snapshots (e.g. put by a worker process).

        All or nothing: raises ``KeyError`` naming the keys that do not exist (or are not
        ready), and then adopts none.
        """
        keys = [keys] if isinstance(keys, str) else list(keys)
        self._lease.flush()
        for attempt in range(2):
            missing = []
            with self._parts.ledger.transaction() as conn:
                for key in keys:
                    if not snapshot_rows.is_ready(conn, key):
                        missing.append(key)
                if not missing:
                    snapshot_rows.set_owner(conn, self._parts.owner.id, keys)
                    return
            if attempt or not any([self._await_published(key) for key in missing]):
                break
        raise KeyError(missing[0] if len(missing) == 1 else missing)
