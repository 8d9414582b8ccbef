"""Policing one arena: reclaim what dead owners left, keep it within its bounds.

* ``gc``: the arena's own :meth:`~noisefs.arena.Arena.gc` (dead owners' reservations,
  partial files and snapshots, orphan files, stale lock files; never a live owner's data).
* ``enforce``: when the arena's charged bytes or inodes (its own plus the foreign inbox
  files, which reserve nothing) reach ``high_watermark`` of its bounds, or the tmpfs's own
  free bytes or inodes fall below ``tmpfs_free_floor`` of the filesystem, move the coldest
  ready snapshots to the spill tier (the arena's atomic tier move) until usage is back at
  ``low_watermark`` and the free space at twice the floor. Nothing is ever deleted: when the
  spill tier is full too, moves stop and the arena's writers wait (backpressure).
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("noisefs.daemon")

MOVE_BATCH = 64
FULL_GC_S = 30.0  # a full gc (orphans, stray rows) this often; a dead owner at once
MOVE_BUDGET_S = 0.5  # per police tick, so signals and ingest stay responsive


def claim_room(figures: dict) -> tuple[int, int] | None:
    """Inodes and bytes the arena has free after every lease (``None`` before the police
    has measured it): what the daemon may still claim of the foreign files (a claimed file
    waits on the tmpfs for its checkpoint; the contract lets foreign files exceed the
    bounds only while they are being written)."""
    if not figures.get("max_files") or "leased_files" not in figures:
        return None
    files = figures["max_files"] - figures["files_used"] - figures["leased_files"]
    nbytes = figures["quota_bytes"] - figures["bytes_used"] - figures["leased_bytes"]
    return files, nbytes


class Police:
    """gc and watermark enforcement for one arena handle."""

    def __init__(self, counters: dict) -> None:
        self._counters = counters
        self.pressure = ""  # why moving, while it is
        self._spill_full_logged = False
        self._no_move_logged = False
        self._stuck = ""  # over a watermark with nothing of ours left to move
        self._last_full_gc = -FULL_GC_S
        self._foreign_set: tuple[int, int] | None = None
        self.figures: dict = {}

    def claim_room(self) -> tuple[int, int] | None:
        """:func:`claim_room` of the last measured figures."""
        return claim_room(self.figures)

    def reset(self) -> None:
        """Forget what was reported through an arena handle that was replaced."""
        self._foreign_set = None

    def gc(self, arena) -> None:
        """Reclaim what dead processes left; count it.

        A dead owner is reclaimed as soon as it is seen (a cheap read and one lock probe
        per owner, every ``gc_interval_s``); the arena's gc drops its rows in transactions
        of at most ``GC_CHUNK_ROWS`` (100), so writers interleave with a large reclaim.
        The rest of a pass is not chunked and not free: it reads every snapshot row and
        lists every tier directory and lock file inside one write transaction (orphan
        files, rows whose file is gone, stray lock files). Those only appear after a
        crash inside the arena's own code and are not urgent, so that full pass runs at
        most every ``FULL_GC_S``: an idle daemon stays well under 1 % of a core and the
        ledger's write lock is not taken every tick for nothing.
        """
        now = time.monotonic()
        owners = self.figures.get("owners")
        if owners is None:
            owners = arena.stats()["owners"]
        if len(arena.live_owners()) >= owners and now - self._last_full_gc < FULL_GC_S:
            return
        self._last_full_gc = now
        report = arena.gc()
        if report.get("bytes") or report.get("files"):
            self._counters["reclaimed_bytes"] += int(report["bytes"])
            self._counters["reclaimed_files"] += int(report["files"])
            log.info(
                "%s: reclaimed %d bytes, %d inodes (%d dead owners, %d partial files, "
                "%d snapshots, %d orphan files)",
                arena.root,
                report["bytes"],
                report["files"],
                report["dead_owners"],
                report["partial_files"],
                report["snapshots"],
                report["orphan_files"],
            )

    def measure(self, arena, root_fd: int, foreign: tuple[int, int]) -> dict:
        """Arena and tmpfs figures (from the ledger's counters and one statvfs)."""
        counted = hasattr(arena, "set_foreign_usage")
        if counted and foreign != self._foreign_set:
            arena.set_foreign_usage(*foreign)  # one short transaction, only on change
            self._foreign_set = foreign
        stats = arena.stats()
        st = os.fstatvfs(root_fd)
        used_b = stats["bytes_used"] + (0 if counted else foreign[0])
        used_f = stats["files_used"] + (0 if counted else foreign[1])
        self.figures = {
            "bytes_used": used_b,
            "files_used": used_f,
            "quota_bytes": stats["quota_bytes"],
            "max_files": stats["max_files"],
            "leased_bytes": stats["leased_bytes"],  # reserved by leases, not yet used
            "leased_files": stats["leased_files"],
            "spilled_bytes": stats["spilled_bytes"],
            "spilled_files": stats["spilled_files"],
            "foreign_bytes": foreign[0],
            "foreign_files": foreign[1],
            "tmpfs_size_bytes": st.f_blocks * st.f_frsize,
            "tmpfs_free_bytes": st.f_bavail * st.f_frsize,
            "tmpfs_inodes": st.f_files,
            "tmpfs_free_inodes": st.f_favail,
            "owners": stats["owners"],
        }
        return self.figures

    def _over(self, f: dict, cfg, level: float, floor_factor: float) -> str:
        if f["bytes_used"] > level * f["quota_bytes"]:
            return "bytes"
        if f["files_used"] > level * f["max_files"]:
            return "inodes"
        if f["tmpfs_size_bytes"] and f["tmpfs_free_bytes"] < (
            cfg.tmpfs_free_floor * floor_factor * f["tmpfs_size_bytes"]
        ):
            return "tmpfs bytes"
        if f["tmpfs_inodes"] and f["tmpfs_free_inodes"] < (
            cfg.tmpfs_free_floor * floor_factor * f["tmpfs_inodes"]
        ):
            return "tmpfs inodes"
        return ""

    def enforce(self, arena, root_fd: int, foreign: tuple[int, int], cfg) -> int:
        """Move cold snapshots to spill while over the watermarks; return how many moved."""
        f = self.measure(arena, root_fd, foreign)
        why = self.pressure or self._over(f, cfg, cfg.high_watermark, 1.0)
        if not why:
            self._stuck = ""
            return 0
        if self._stuck and not arena.cold_keys(1):
            return 0  # still nothing to move; said so once
        if not (hasattr(arena, "move") and hasattr(arena, "cold_keys")):
            if not self._no_move_logged:
                log.warning(
                    "%s: over its high watermark (%s) but this arena has no tier move",
                    arena.root,
                    why,
                )
                self._no_move_logged = True
            return 0
        if not self.pressure:
            log.info(
                "%s: %s over the high watermark; moving cold snapshots to spill", arena.root, why
            )
        self.pressure = why
        moved = 0
        deadline = time.monotonic() + MOVE_BUDGET_S
        while time.monotonic() < deadline:
            if not self._over(f, cfg, cfg.low_watermark, 2.0):
                log.info(
                    "%s: back under the low watermark after moving %d snapshots", arena.root, moved
                )
                self.pressure = ""
                self._spill_full_logged = False
                break
            keys = arena.cold_keys(MOVE_BATCH)
            if not keys:
                if not self._stuck:
                    log.warning(
                        "%s: %s still over the watermark with no cold snapshot left to move "
                        "(the rest is foreign data, pages still mapped by writers, or live "
                        "writes); writers wait for room, nothing is deleted",
                        arena.root,
                        why,
                    )
                self._stuck = why
                self.pressure = ""
                break
            self._stuck = ""
            for key in keys:
                try:
                    nbytes = arena.info(key)["alloc_bytes"]
                except KeyError:
                    continue
                if not arena.move(key, tier="spill"):
                    if not self._spill_full_logged:
                        log.warning(
                            "%s: spill tier full; writers wait (nothing is deleted)", arena.root
                        )
                        self._spill_full_logged = True
                    return moved
                moved += 1
                self._counters["moved_files"] += 1
                self._counters["moved_bytes"] += int(nbytes)
            f = self.measure(arena, root_fd, foreign)
        return moved
