"""The bounds an arena stores in its ledger for every process, their sanity check, and a
handle's copy of them (:class:`StoredBounds`: settled when it opens, refreshed when another
process stores new ones)."""

from __future__ import annotations

from pathlib import Path

from noisefs.arena import accounting, ledger, snapfile
from noisefs.arena.admission import FREE_FRACTION, LEDGER_GROWTH
from noisefs.arena.maps import MAX_BYTES, MapCache
from noisefs.arena.parts import Bounds
from noisefs.arena.paths import default_spill_dir
from noisefs.errors import ArenaError
from noisefs.units import format_bytes

DEFAULT_SETTINGS = {
    "quota_bytes": 1 << 30,
    "max_files": 10_000,
    "spill_dir": None,
    "spill_quota_bytes": None,
}


def bounds_from(stored: dict, root: Path) -> Bounds:
    """The :class:`Bounds` of settings as the ledger stores them (defaults filled in)."""
    stored = {**DEFAULT_SETTINGS, **stored}
    sq = stored["spill_quota_bytes"]
    return Bounds(
        quota_bytes=int(stored["quota_bytes"]),
        max_files=int(stored["max_files"]),
        spill_quota_bytes=None if sq is None else int(sq),
        spill_dir=Path(stored["spill_dir"] or default_spill_dir(root)),
    )


def check_minimum(root_fd: int, bounds: Bounds, root: Path) -> None:
    """Refuse bounds that leave no room for a single snapshot beside the metadata."""
    measured = accounting.measure(root_fd)
    meta = measured.bytes
    smallest = meta + snapfile.alloc_for(1) + LEDGER_GROWTH  # room for one tiny snapshot
    if bounds.quota_bytes < smallest:
        raise ArenaError(
            f"arena {root}: quota {format_bytes(bounds.quota_bytes)} is smaller than its metadata "
            f"({format_bytes(meta)} for the ledger and slack); a quota of "
            f"{format_bytes(smallest)} holds one tiny snapshot, 64MiB or more suits real runs"
        )
    inodes = max(measured.inodes, len(ledger.DB_FILES) + 2)  # data/, owners/, ledger
    if bounds.max_files < inodes + 2:
        raise ArenaError(
            f"arena {root}: max_files {bounds.max_files} leaves no room for snapshots "
            f"({inodes} inodes of metadata + 1 lock file per process); use at least {inodes + 8}"
        )


class StoredBounds:
    """One handle's copy of the bounds its arena stores: :meth:`settle` once when the handle
    opens, :meth:`refresh` whenever the ledger may hold newer ones. ``bounds`` is the one
    :class:`Bounds` record every part of the handle shares, updated in place; the memory
    maps kept beyond their file's life are bounded with it."""

    def __init__(self, root: Path, maps: MapCache) -> None:
        self.root = root
        self.maps = maps
        self.bounds: Bounds | None = None  # read from the ledger by settle()

    def settle(self, conn, explicit: dict, root_fd: int) -> None:
        """Inside the opening transaction: the stored settings with ``explicit`` values
        over them, checked (:func:`check_minimum`: refused bounds are never stored) and
        stored for every process when they changed."""
        found = ledger.get_settings(conn)
        stored = {**DEFAULT_SETTINGS, **found, **explicit}
        # the spill dir is resolved once, by the creator, and stored: every process
        # (whatever its $XDG_CACHE_HOME) must look for spilled snapshots in one place
        stored["spill_dir"] = str(stored["spill_dir"] or default_spill_dir(self.root))
        moved = found.get("spill_dir") not in (None, stored["spill_dir"])
        if moved and ledger.counters(conn)["spill_files"]:
            raise ArenaError(
                f"arena {self.root} holds spilled snapshots in {found['spill_dir']}; it cannot "
                f"spill to {stored['spill_dir']} until they are consumed (or reclaimed by "
                "`noisefs gc`); leave --spill out to use the arena's own"
            )
        self._apply(stored)
        check_minimum(root_fd, self.bounds, self.root)  # refused: never stored
        if any(found.get(k) != stored[k] for k in DEFAULT_SETTINGS):
            ledger.put_settings(conn, {k: stored[k] for k in DEFAULT_SETTINGS})

    def refresh(self, conn) -> None:
        """Adopt bounds another process stored since this handle opened (one small query)."""
        found = ledger.get_settings(conn)
        if found.get("spill_dir") not in (None, str(self.bounds.spill_dir)):
            found["spill_dir"] = str(self.bounds.spill_dir)  # an open handle keeps its spill dir
        self._apply({**DEFAULT_SETTINGS, **found})

    def _apply(self, stored: dict) -> None:
        bounds = bounds_from(stored, self.root)
        if self.bounds is None:
            self.bounds = bounds
        else:  # the parts hold this very record: update it in place
            vars(self.bounds).update(vars(bounds))
        # mappings kept beyond their file's life pin tmpfs pages: bound them like the free list
        self.maps.max_bytes = int(min(MAX_BYTES, bounds.quota_bytes * FREE_FRACTION))
