"""One arena the daemon holds: its handle, lock, inbox and counters, and how it is opened."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from noisefs.daemon.config import ArenaConfig
from noisefs.daemon.ingest import Inbox
from noisefs.daemon.police import Police

log = logging.getLogger("noisefs.daemon")


def new_counters() -> dict:
    """The counters of one arena (status, metrics)."""
    keys = ("ingested_files", "ingested_bytes", "reclaimed_bytes", "reclaimed_files")
    more = ("moved_bytes", "moved_files", "missed_events", "results_written")
    return {**{k: 0 for k in keys + more}, "rejected": {}}


def open_arena(cfg: ArenaConfig):
    """An arena handle with the configured bounds (stored in the arena when given)."""
    from noisefs.arena import Arena

    return Arena(
        root=cfg.root,
        quota=cfg.quota_bytes,
        max_files=cfg.max_files,
        spill_dir=cfg.spill_dir,
        spill_quota=cfg.spill_quota_bytes,
        # not the runs' 120 s (options.DEFAULT_PUT_TIMEOUT_S): the daemon serves many
        # inboxes from one thread, and a file that finds no room waits in its inbox instead
        timeout_s=5.0,
    )


def adopt_legacy_checkpoints(legacy: Path, state: Path) -> None:
    """Move checkpoints from where earlier versions kept them (``<results>/.noisefs-daemon``)
    into the arena's state directory, so that an upgrade loses no running average."""
    import shutil

    try:
        old = sorted(legacy.glob("*.ckpt.npz"))
    except OSError:
        return
    if not old:
        return
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in old:
        if not (state / path.name).exists():
            shutil.move(str(path), str(state / path.name))
            log.info("checkpoint %s moved to %s", path, state)


@dataclass
class Held:
    """One arena the daemon holds."""

    cfg: ArenaConfig
    root_fd: int
    lock_fd: int
    arena: object
    inbox: Inbox
    counters: dict
    police: Police
    last_gc: float = 0.0
    extra: dict = field(default_factory=dict)

    def close(self) -> None:
        self.arena.close()
        os.close(self.lock_fd)  # releases the flock
        os.close(self.root_fd)
