"""The snapshot arena: a quota- and inode-bounded store on tmpfs with a spill tier.

Public: :class:`Arena`, :func:`default_root`, :func:`default_spill_dir`. The modules
behind it have one job each: ``paths`` (safe directories), ``ledger`` (SQLite tables),
``accounting`` (the one formula for charged bytes and inodes, metadata measured),
``owners`` (per-process lock files), ``lifecycle`` (registering owners), ``snapfile``
(file format and checksum), ``maps`` (cached memory maps), ``tiers`` (tmpfs and spill as
objects), ``admission`` (placement), ``lease`` (per-process leases: the commit-free fast
path), ``move`` (between tiers), ``store`` (the ``Arena``) and ``audit`` (figures, gc,
check). See docs/arena.md. ``Arena.open_existing(root)`` is the read-only maintenance handle
that ``noisefs status`` and ``noisefs gc`` use: it creates nothing and owns nothing.
"""

from __future__ import annotations

from noisefs.arena.paths import default_root, default_spill_dir
from noisefs.arena.store import Arena

__all__ = ["Arena", "default_root", "default_spill_dir"]
