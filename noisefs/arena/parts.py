"""What the parts of one ``Arena`` handle share, declared in one place.

An ``Arena`` is a facade over parts (the lease, admission, the write and read paths, moves,
gc and the audit, owner registration); each part receives an :class:`ArenaParts` and keeps
its own state to itself. The record names every resource they share: the root's
descriptors, the ledger, the tiers and their mappings, the bounds stored in the ledger
(refreshed when another process changes them) and this handle's owner registration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from noisefs.arena.ledger import Ledger
from noisefs.arena.maps import MapCache
from noisefs.arena.tiers import SpillTier, Tier, TmpfsTier
from noisefs.errors import ArenaError


@dataclass
class Owner:
    """This handle's registration as an owner: ``id`` is None for a maintenance handle
    (``noisefs status``, gc) and until registered."""

    id: int | None = None
    lock_name: str | None = None
    lock_fd: int | None = None


@dataclass
class Bounds:
    """The arena's bounds as stored in its ledger (every process shares them)."""

    quota_bytes: int
    max_files: int
    spill_quota_bytes: int | None
    spill_dir: Path


@dataclass
class SpillPause:
    """The spill filesystem said it is full: new spill files wait a moment."""

    until: float = 0.0

    def pause(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    @property
    def active(self) -> bool:
        return self.until > time.monotonic()


@dataclass(frozen=True)
class ArenaParts:
    """The shared resources of one handle (see the module docstring)."""

    root: Path
    identity: str  # "dev:ino" of the root, whatever path spelled it
    pid: int  # the process the handle belongs to
    root_fd: int
    owners_fd: int
    ledger: Ledger
    tmpfs: TmpfsTier
    spill: SpillTier
    maps: MapCache
    owner: Owner
    bounds: Bounds
    spill_pause: SpillPause
    refresh_bounds: Callable[[object], None]  # (conn): adopt bounds stored since opening

    @property
    def tiers(self) -> tuple[Tier, Tier]:
        return (self.tmpfs, self.spill)

    def tier(self, name: str) -> Tier:
        """The tier stored in the ledger as ``name`` ('tmpfs' or 'spill')."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise ArenaError(f"arena {self.root}: unknown tier {name!r} in the ledger")

    def forget_slots(self, slots) -> None:
        """Drop cached mappings of files that are gone or recycled."""
        self.maps.forget(slots)
