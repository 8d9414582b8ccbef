"""Per-process leases: quota bytes and inodes reserved in the ledger in chunks, so that the
common cycle (put, get, release in one process) touches the ledger not at all.

A lease is a ledger reservation (``owners.lease_bytes``/``lease_files``, counted whole by
``accounting.charged``), so ``du``/``find`` stay within the bound at every instant: a file
is made under a lease only while ``used + alloc <= lease``. Files made under it are named
``o<owner id hex>-<n hex>.snap``; until they are published they have no row. A ``put``
served by the lease writes its file and records the snapshot here (*pending*); a
``release`` of a pending snapshot puts its file on this process's private free list (or
unlinks it); neither commits anything.

What must stay findable, and how (the trade-off): pending snapshots are published as
``ready`` rows, in one transaction for all of them, by a background thread
(:mod:`noisefs.arena.lease_publisher`) once the oldest is ``PUBLISH_DELAY_S`` old (a
snapshot released sooner never costs a row), and at once by anything of this handle that
reads rows (``keys``, ``stats``, ``check``, ``gc``, ``adopt``, ``move``, ``cold_keys``,
``close``). So another process sees a new key up to
``PUBLISH_DELAY_S`` (plus a commit) late; its ``get``/``adopt``/``info``/``release`` of a key
it was handed waits for the publication (lease keys ``run:step:batch:<owner>-<seq>`` name
their owner, whose ``published_seq`` says when every key up to a sequence is in rows).
``noisefs status`` and other processes' ``keys`` may miss the newest snapshots for that
long; the per-owner figures other processes' ``stats`` add up (files under leases, private
free lists) lag by at most ``FIGURES_S``. Admission never lags: it counts leases whole.

Pressure: a ``put`` that waits for room marks its owner ``waiting``; lease holders look
(one read, at most every ``CHECK_S``, from the hot path and the background thread) and give
back what they do not use (private free list, unused lease) when someone waits or when the
charged total exceeds the bounds (foreign files, a smaller quota stored meanwhile).

Death: a lease belongs to its owner row, reclaimed with it by gc (files first: every
``o<id>-`` file without a row, then the row and its lease counters).

Lock order: ``Lease.lock`` is taken before a ledger transaction, never inside one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from noisefs.arena import accounting, ledger
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.admission import FREE_FRACTION, LEDGER_GROWTH, Admission, Placement, pending
from noisefs.arena.lease_keys import slot_prefix
from noisefs.arena.lease_publisher import LeasePublisher
from noisefs.arena.parts import ArenaParts
from noisefs.arena.rows import SnapshotMeta, SnapshotRow, signed_checksum

CHECK_S = 0.01  # pressure is looked at no more often than this from the hot path
CHUNK_BYTES = 64 << 20  # a lease grows by at most this (and at most quota / 8) ...
CHUNK_FILES = 256  # ... and by at most this many inodes (and max_files / 16)


@dataclass
class Pending:
    row: SnapshotRow  # id None (no row yet), state 'ready'
    seq: int


class Lease:
    """The lease of one ``Arena`` handle (its owner) and the snapshots it holds unpublished."""

    def __init__(self, parts: ArenaParts, admission: Admission) -> None:
        self._parts = parts
        self._admission = admission
        self.lock = threading.RLock()
        self.bytes = self.files = 0  # granted: what the owner row says
        self.used_bytes = self.used_files = 0  # files that exist under it (pending, free, writing)
        self.free: dict[int, list[str]] = {}  # alloc -> private free-list slots
        self.inodes: dict[str, int] = {}  # slot -> inode of the files made under the lease
        self.free_bytes = self.free_files = 0
        self.pending: dict[str, Pending] = {}
        self.seq = 0
        self.in_flight: set[int] = set()  # sequences placed, not yet pending
        self._files = 0
        self._next_check = 0.0
        self._global_free = 0  # the shared free list's size, as last seen
        self._published_figures: tuple | None = None  # the owner row's, as last written
        self._publisher = LeasePublisher(self, str(parts.root))

    # ------------------------------------------------------------------ placing

    def place(self, alloc: int, prefix: str) -> Placement | None:
        """A file under the lease for a new snapshot (recycled when one of the size is
        free), or None: the caller takes the row path (spill, the shared free list, wait)."""
        a = self._parts
        with self.lock:
            self.check_pressure()
            if alloc > a.bounds.quota_bytes // 2:  # big ones take the row path
                return None
            slots = self.free.get(alloc)
            if slots:
                slot, recycled = slots.pop(), True
                self.free_bytes -= alloc
                self.free_files -= 1
            else:
                if not self._fits(alloc) and not self._grow(alloc):
                    return None
                self._files += 1
                slot, recycled = f"{slot_prefix(a.owner.id)}{self._files:x}.snap", False
                self.used_bytes += alloc
                self.used_files += 1
            self.seq += 1
            self.in_flight.add(self.seq)
            key = f"{prefix}:{a.owner.id:x}-{self.seq:x}"
            p = Placement(None, key, a.tmpfs, slot, alloc, recycled)
            p.seq = self.seq
            p.inode = self.inodes.get(slot)
            return p

    def _fits(self, alloc: int) -> bool:
        return self.used_bytes + alloc <= self.bytes and self.used_files + 1 <= self.files

    def publish(self, p: Placement, meta_row: SnapshotMeta, check: int, created: float) -> None:
        """The file of ``p`` is complete: record it as a ready snapshot (no commit)."""
        run, step, batch, nbytes, dtype, shape = meta_row
        row = SnapshotRow(
            None, p.tier.name, p.slot, p.alloc, nbytes, dtype, shape, signed_checksum(check),
            "ready", run, step, batch, self._parts.owner.id, created,
        )  # fmt: skip
        with self.lock:
            self.pending[p.key] = Pending(row, p.seq)
            self.inodes[p.slot] = p.inode
            self.in_flight.discard(p.seq)
        self._publisher.start()

    def rollback(self, p: Placement) -> None:
        """Forget a placement whose write failed: its file goes (and leaves the lease's use)."""
        p.tier.unlink(p.slot)
        with self.lock:
            self.inodes.pop(p.slot, None)
            self.in_flight.discard(p.seq)
            self.used_bytes -= p.alloc
            self.used_files -= 1

    def row(self, key: str) -> SnapshotRow | None:
        """The record of pending ``key`` (no lock: callable inside a transaction)."""
        found = self.pending.get(key)
        return None if found is None else found.row

    def release(self, key: str, views_live: bool) -> bool:
        """Release a pending snapshot (False: not pending here). Its file joins the
        private free list unless views of it live in this process or the list is full."""
        a = self._parts
        with self.lock:
            found = self.pending.pop(key, None)
            if found is None:
                return False
            slot, alloc = found.row.slot, found.row.alloc_bytes
            cap = a.bounds.quota_bytes * FREE_FRACTION - self._global_free
            if not views_live and self.free_bytes + alloc <= cap:
                self.free.setdefault(alloc, []).append(slot)
                self.free_bytes += alloc
                self.free_files += 1
                return True
            a.tmpfs.unlink(slot)  # the file goes first; its bytes stay in the lease
            self.inodes.pop(slot, None)
            self.used_bytes -= alloc
            self.used_files -= 1
            return True

    def take_back(self, conn, row_id: int, slot: str, alloc: int):
        """Inside the caller's transaction (``lock`` held): turn the released row of a file
        made under this lease back into a private free-list file (its bytes and inode move
        from the row into the lease), so that the next put recycles it without a commit.
        Returns what to apply locally once the transaction commits, or None when it is not
        this lease's file or the private free list is full."""
        a = self._parts
        if a.owner.id is None or not slot.startswith(slot_prefix(a.owner.id)):
            return None
        if self.free_bytes + alloc > a.bounds.quota_bytes * FREE_FRACTION - self._global_free:
            return None
        snapshot_rows.delete(conn, row_id)
        ledger.bump(conn, **a.tmpfs.counter_deltas(-alloc, -1), lease_bytes=alloc, lease_files=1)
        new = (self.bytes + alloc, self.files + 1, self.used_bytes + alloc, self.used_files + 1)
        published = min(self.in_flight) - 1 if self.in_flight else self.seq
        self._write_owner(
            conn, *new, published, free=(self.free_bytes + alloc, self.free_files + 1)
        )

        def apply() -> None:
            self.bytes, self.files, self.used_bytes, self.used_files = new
            self.free.setdefault(alloc, []).append(slot)
            self.free_bytes += alloc
            self.free_files += 1

        return apply

    # ------------------------------------------------------------------ the ledger

    def _sync(self, conn) -> callable:
        """Write pending snapshots as rows and this lease's figures into the owner row,
        inside ``conn``'s transaction; return what to apply locally once it commits."""
        a = self._parts
        items = sorted(self.pending.items(), key=lambda kv: kv[1].seq)
        if items:
            snapshot_rows.insert_ready(conn, [(key, p.row) for key, p in items])
        moved_bytes = sum(p.row.alloc_bytes for _, p in items)
        moved_files = len(items)
        ledger.bump(
            conn,
            **a.tmpfs.counter_deltas(moved_bytes, moved_files),
            lease_bytes=-moved_bytes,
            lease_files=-moved_files,
        )
        published = min(self.in_flight) - 1 if self.in_flight else self.seq
        new = (
            self.bytes - moved_bytes,
            self.files - moved_files,
            self.used_bytes - moved_bytes,
            self.used_files - moved_files,
        )
        self._write_owner(conn, *new, published)
        done = {key for key, _ in items}

        def apply() -> None:
            self.bytes, self.files, self.used_bytes, self.used_files = new
            for key in done:  # rows now: no longer private files of the lease
                found = self.pending.pop(key, None)
                if found is not None:
                    self.inodes.pop(found.row.slot, None)

        return apply

    def _write_owner(
        self, conn, lb: int, lf: int, ub: int, uf: int, published: int, free: tuple | None = None
    ) -> None:
        """The owner row's lease, used and free figures (``free``: this handle's own unless
        a change about to be applied says otherwise)."""
        free = free if free is not None else (self.free_bytes, self.free_files)
        owner_rows.set_lease_figures(
            conn, self._parts.owner.id, (lb, lf), (ub, uf), free, published
        )

    def flush(self) -> None:
        """Publish every pending snapshot now (one transaction; nothing when there is none
        and the owner row is current)."""
        if self._parts.owner.id is None:
            return  # a maintenance handle holds nothing
        with self.lock:
            if not self.pending and not self.in_flight and not self.figures_dirty():
                return
            with self._parts.ledger.transaction() as conn:
                apply = self._sync(conn)
            apply()
            self._published_figures = self._figures()

    def _figures(self) -> tuple:
        return (self.bytes, self.files, self.used_bytes, self.used_files, self.free_bytes)

    def figures_dirty(self) -> bool:
        """Whether the owner row's lease, used and free figures are not this lease's."""
        return self._published_figures != self._figures()

    def oldest_pending(self) -> float | None:
        """When the oldest pending snapshot was created (``time.time()``), or None."""
        return min((p.row.created for p in self.pending.values()), default=None)

    def _grow(self, alloc: int) -> bool:
        """Reserve room for ``alloc`` more (a chunk when there is room for one); publishes
        what is pending in the same transaction. False when even ``alloc`` does not fit
        (after giving up the private free list)."""
        for attempt in range(2):
            if attempt:
                if not self.free_files:
                    return False
                self._drop_free()
                if self._fits(alloc):
                    return True
            if self._grow_once(alloc):
                return True
        return False

    def _grow_once(self, alloc: int) -> bool:
        a = self._parts
        granted = None
        with a.ledger.transaction() as conn:
            apply = self._sync(conn)  # committed even when nothing is granted
            a.refresh_bounds(conn)
            c = ledger.counters(conn)
            self._global_free = c["free_bytes"]
            meta = accounting.measure(a.root_fd)
            need_b = max(0, self.used_bytes + alloc - self.bytes)
            need_f = max(0, self.used_files + 1 - self.files)
            waiters = self._waiters(conn)
            want_b = need_b if waiters else max(need_b, min(CHUNK_BYTES, a.bounds.quota_bytes // 8))
            want_f = need_f if waiters else max(need_f, min(CHUNK_FILES, a.bounds.max_files // 16))
            if self._admission.make_room(conn, c, meta, need_b, need_f):
                c = ledger.counters(conn)
                used_b, used_f = accounting.charged(c, meta)
                room_b, room_f = a.tmpfs.room(*pending(conn, a.tmpfs))
                grant_b = max(
                    need_b, int(min(want_b, a.bounds.quota_bytes - LEDGER_GROWTH - used_b, room_b))
                )
                grant_f = max(need_f, int(min(want_f, a.bounds.max_files - used_f, room_f)))
                moved_b = sum(p.row.alloc_bytes for p in self.pending.values())
                moved_f = len(self.pending)
                granted = (self.bytes - moved_b + grant_b, self.files - moved_f + grant_f)
                owner_rows.set_lease(conn, a.owner.id, *granted)
                ledger.bump(conn, lease_bytes=grant_b, lease_files=grant_f)
                ledger.raise_peaks(conn, *accounting.charged(ledger.counters(conn), meta))
        apply()
        if granted is None:
            return False
        self.bytes, self.files = granted
        return True

    def _waiters(self, conn) -> int:
        return owner_rows.waiters(conn, self._parts.owner.id)

    # ------------------------------------------------------------------ giving back

    def _drop_free(self) -> None:
        """Unlink the private free list (its bytes stay leased until the lease shrinks)."""
        tmpfs = self._parts.tmpfs
        for alloc, slots in self.free.items():
            for slot in slots:
                tmpfs.unlink(slot)
                self.inodes.pop(slot, None)
                self.used_bytes -= alloc
                self.used_files -= 1
        self.free.clear()
        self.free_bytes = self.free_files = 0

    def give_back(self) -> None:
        """Publish what is pending, unlink the private free list and return the unused
        part of the lease to the ledger (one transaction)."""
        with self.lock:
            self._drop_free()
            with self._parts.ledger.transaction() as conn:
                apply = self._sync(conn)
                moved = sum(p.row.alloc_bytes for p in self.pending.values()), len(self.pending)
                keep_b, keep_f = self.used_bytes - moved[0], self.used_files - moved[1]
                had_b, had_f = self.bytes - moved[0], self.files - moved[1]
                owner_rows.set_lease(conn, self._parts.owner.id, keep_b, keep_f)
                ledger.bump(conn, lease_bytes=keep_b - had_b, lease_files=keep_f - had_f)
            apply()
            self.bytes, self.files = keep_b, keep_f
            self._published_figures = None

    def check_pressure(self, force: bool = False) -> None:
        """Give back what is unused when another owner waits or the bounds are exceeded.
        One read query, at most every ``CHECK_S`` unless ``force``."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + CHECK_S
        if self.bytes == self.used_bytes - self.free_bytes and self.files == self.used_files - (
            self.free_files
        ):
            return  # nothing unused to give
        a = self._parts
        waiters, nbytes, nfiles, quota, max_files = owner_rows.pressure(a.ledger.conn(), a.owner.id)
        over = nbytes > (quota or a.bounds.quota_bytes) or nfiles > (
            max_files or a.bounds.max_files
        )
        if waiters or over:
            self.give_back()

    def close(self) -> None:
        """Stop the thread, publish what is pending, unlink the private free list; the
        lease itself goes with the owner row (``lifecycle.unregister_owner``)."""
        self._publisher.stop()
        with self.lock:
            self._drop_free()
            if self.pending or self.figures_dirty():
                self.flush()
