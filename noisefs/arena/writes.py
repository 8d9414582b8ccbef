"""The write side of an :class:`~noisefs.arena.store.Arena` (the ``Writer`` part): ``put`` and what it takes —
placement (the lease first, then a row by admission), the write into the placed tier, the
publication, and the rollback that gives a failed placement back (file first, then its
reservation). Backpressure: a put that finds no room marks its owner waiting (lease holders
give room back), runs gc now and then, and waits up to ``timeout_s``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np

from noisefs import faults
from noisefs.arena import audit, reclaim, snapfile, tiers
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.admission import Admission, Placement
from noisefs.arena.lease import Lease
from noisefs.arena.parts import ArenaParts
from noisefs.arena.paths import validate_index, validate_run
from noisefs.arena.rows import FileRow, SnapshotMeta, signed_checksum
from noisefs.errors import ArenaError, ArenaFull, InputError
from noisefs.units import format_bytes

log = logging.getLogger("noisefs.arena")

NUMERIC_KINDS = "biufc"


_SHAPES: dict[tuple, str] = {}


def _shape_json(shape: tuple) -> str:
    """``json.dumps(list(shape))``, cached (a put's shape is usually the last one's)."""
    found = _SHAPES.get(shape)
    if found is None:
        if len(_SHAPES) > 1024:
            _SHAPES.clear()
        found = _SHAPES[shape] = json.dumps(list(shape))
    return found


class Writer:
    """``put`` and its placement, write, publication and rollback, for one handle."""

    def __init__(
        self,
        parts: ArenaParts,
        lease: Lease,
        admission: Admission,
        timeout_s: float,
        figures: Callable[[], dict],
    ) -> None:
        self._parts = parts
        self._lease = lease
        self._admission = admission
        self._timeout_s = timeout_s
        self._figures = figures  # the arena's stats(), for the full message

    def put(self, array, run: str = "r1", step: int = 0, batch: int = 0) -> str:
        """Store a copy of ``array``; return its key (see ``Arena.put``)."""
        if self._parts.owner.id is None:
            raise ArenaError(f"arena {self._parts.root}: this handle is read-only (maintenance)")
        validate_run(run)
        step = validate_index("step", step)
        batch = validate_index("batch", batch)
        arr = np.asarray(array)
        if arr.dtype.kind not in NUMERIC_KINDS or arr.dtype.fields is not None:
            raise InputError(f"arena stores numeric arrays only, not dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr) if arr.ndim else arr.reshape(())
        src = arr.reshape(-1).view(np.uint8) if arr.nbytes else np.empty(0, np.uint8)
        nbytes = int(arr.nbytes)
        alloc = snapfile.alloc_for(nbytes)
        meta_row = SnapshotMeta(run, step, batch, nbytes, arr.dtype.str, _shape_json(arr.shape))
        prefix = f"{run}:{step}:{batch}"
        if (
            alloc > self._parts.bounds.quota_bytes
            and self._parts.bounds.spill_quota_bytes is not None
            and alloc > self._parts.bounds.spill_quota_bytes
        ):
            raise ArenaFull(
                f"a {format_bytes(alloc)} snapshot can never fit arena {self._parts.root}: its quota is "
                f"{format_bytes(self._parts.bounds.quota_bytes)} and its spill bound {format_bytes(self._parts.bounds.spill_quota_bytes)}; "
                "raise --quota or the spill bound",
                needed_bytes=alloc,
            )
        deadline = time.monotonic() + self._timeout_s
        allow_tmpfs, delay, next_gc = True, 0.002, time.monotonic() + 1.0
        waiting = False
        try:
            while True:
                placement = self._lease.place(alloc, prefix) if allow_tmpfs else None
                if placement is None:
                    with self._parts.ledger.transaction() as conn:
                        placement = self._admission.place(
                            conn, alloc, meta_row, prefix, allow_tmpfs, self._parts.maps.slots()
                        )
                if placement is not None:
                    placement.meta_row = meta_row
                    outcome = self._placed(placement, arr, src)
                    if outcome == "done":
                        return placement.key
                    allow_tmpfs = allow_tmpfs and outcome != "tmpfs full"
                    continue
                if not waiting:  # mark this owner waiting: lease holders give back room
                    waiting = True
                    self._set_waiting(True)
                now = time.monotonic()
                if now >= deadline:
                    raise ArenaFull(self._full_message(alloc), needed_bytes=alloc)
                if now >= next_gc:
                    audit.gc(self._parts)
                    next_gc = now + 1.0
                    allow_tmpfs = True
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, 0.05)
        finally:
            if waiting:
                self._set_waiting(False)

    def _set_waiting(self, flag: bool) -> None:
        if flag:
            self._lease.give_back()  # what this handle holds unused may be what it needs
        with self._parts.ledger.transaction() as conn:
            owner_rows.set_waiting(conn, self._parts.owner.id, flag)

    def _placed(self, placement, arr: np.ndarray, src: np.ndarray) -> str:
        """Write and publish a placement: ``'done'``, or (rolled back) ``'again'`` or
        ``'tmpfs full'`` (ENOSPC from the tmpfs itself: roll over to spill)."""
        try:
            faults.hold_at("batch.reserved")
            check = self._write(placement, arr, src)
            faults.hold_at("batch.written")
            if faults.fires("arena.publish-interrupted"):
                raise KeyboardInterrupt  # as a Ctrl-C between the write and the publication
            self._publish(placement, check)
        except tiers.NoRoom as exc:
            self.rollback(placement)
            if placement.tier.charged:
                return "tmpfs full"
            # the spill filesystem is full: wait like for any other lack of room
            self._parts.spill_pause.pause(0.25)
            log.info("spill tier full (%s); waiting for room", exc)
            self._spill_error = str(exc)
            return "again"
        except tiers.StaleSlot:
            log.warning(
                "arena %s: dropping free-list entry of vanished file %s",
                self._parts.root,
                placement.slot,
            )
            self.rollback(placement)
            return "again"
        except BaseException:
            self.rollback(placement)
            raise
        return "done"

    def _full_message(self, alloc: int) -> str:
        s = self._figures()
        bound = (
            "unbounded"
            if self._parts.bounds.spill_quota_bytes is None
            else format_bytes(self._parts.bounds.spill_quota_bytes)
        )
        return (
            f"arena {self._parts.root} is full: no room for a {format_bytes(alloc)} snapshot within {self._timeout_s:g} s "
            f"(tmpfs {format_bytes(s['bytes_used'])} of {format_bytes(self._parts.bounds.quota_bytes)}, "
            f"{s['files_used']} of {self._parts.bounds.max_files} files; spill {self._parts.bounds.spill_dir} holds "
            f"{format_bytes(s['spilled_bytes'])}, bound {bound}{self._spill_refused()}); release "
            "snapshots, raise --quota or --max-files, or free space for the spill directory"
        )

    _spill_error = ""  # what the spill filesystem said when it last refused a write

    def _spill_refused(self) -> str:
        return f", and refused the last write: {self._spill_error}" if self._spill_error else ""

    def _write(self, p, arr: np.ndarray, src: np.ndarray) -> int:
        check = p.tier.write(p, arr, src)
        pause = faults.setting("arena.put-paused")
        if pause:  # fault injection for tests: announce, then hang between write and publish
            self._lease.flush()  # what was put before is published, as after a short while
            with open(pause, "w") as marker:
                marker.write(f"{os.getpid()} {p.key} {p.tier.name} {p.slot}\n")
            while True:
                time.sleep(3600)
        return check

    def rollback(self, p: Placement) -> None:
        """Undo a reservation: the file goes first, then its row."""
        if p.row_id is None:
            self._lease.rollback(p)
            return
        p.tier.unlink(p.slot)
        with self._parts.ledger.transaction() as conn:
            row = FileRow(p.row_id, p.tier.name, p.slot, p.alloc, "writing", p.key)
            reclaim.drop_rows(self._parts, conn, [row], unlink=False)

    def _publish(self, p, check: int) -> None:
        if p.row_id is None:  # under the lease: a ready snapshot now, a row soon (lease.py)
            self._lease.publish(p, p.meta_row, check, time.time())
            return
        with self._parts.ledger.transaction() as conn:
            if not snapshot_rows.mark_ready(conn, p.row_id, signed_checksum(check)):
                raise ArenaError(
                    f"arena {self._parts.root}: the reservation of {p.key} vanished (reclaimed by gc?)"
                )
