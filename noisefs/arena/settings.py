"""The bounds an arena stores in its ledger for every process, and their sanity check."""

from __future__ import annotations

from pathlib import Path

from noisefs.arena import accounting, ledger, snapfile
from noisefs.arena.admission import LEDGER_GROWTH
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
