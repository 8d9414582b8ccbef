"""One arena the daemon holds: its handle, lock, inbox and counters, and how it is taken."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from noisefs.arena import Arena
from noisefs.arena.paths import open_private_dir
from noisefs.daemon.config import ArenaConfig, DaemonConfig, default_state_dir
from noisefs.daemon.ingest import Inbox
from noisefs.daemon.police import Police
from noisefs.daemon.statusfile import take_lock

log = logging.getLogger("noisefs.daemon")


def new_counters() -> dict:
    """The counters of one arena (status, metrics)."""
    keys = ("ingested_files", "ingested_bytes", "reclaimed_bytes", "reclaimed_files")
    more = ("moved_bytes", "moved_files", "missed_events", "results_written")
    return {**{k: 0 for k in keys + more}, "rejected": {}}


def open_arena(cfg: ArenaConfig):
    """An arena handle with the configured bounds (stored in the arena when given)."""
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


def state_dir(cfg: ArenaConfig, daemon_cfg: DaemonConfig) -> Path:
    """Where the arena's checkpoints live: keyed by the arena alone, never by the results
    directory (a restart with another ``--results`` must find them)."""
    tag = hashlib.sha256(str(cfg.root).encode()).hexdigest()[:8]
    state = (daemon_cfg.state_dir or default_state_dir()) / f"{cfg.root.name}-{tag}"
    adopt_legacy_checkpoints(cfg.results_dir / ".noisefs-daemon" / state.name, state)
    return state


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

    def close(self) -> None:
        """Close the inbox (its fds and checkpoint thread), the arena handle, the lock."""
        try:
            self.inbox.close()
        finally:
            self.arena.close()
            os.close(self.lock_fd)  # releases the flock
            os.close(self.root_fd)


def hold(cfg: ArenaConfig, daemon_cfg: DaemonConfig) -> Held:
    """Take an arena: its root, its lock (``ArenaBusy`` when another daemon has it), a
    handle with the configured bounds and its inbox (checkpoints loaded, claimed files
    recovered). Nothing is left open when it fails."""
    root_fd = open_private_dir(cfg.root, create=True)
    try:
        lock_fd = take_lock(root_fd, cfg.root)
    except BaseException:
        os.close(root_fd)
        raise
    try:
        arena = open_arena(cfg)
        try:
            cfg.results_dir.mkdir(parents=True, exist_ok=True)
            counters = new_counters()
            inbox = Inbox(root_fd, cfg.root, cfg, state_dir(cfg, daemon_cfg), counters, daemon_cfg)
        except BaseException:
            arena.close()
            raise
    except BaseException:
        os.close(lock_fd)
        os.close(root_fd)
        raise
    return Held(cfg, root_fd, lock_fd, arena, inbox, counters, Police(counters))
