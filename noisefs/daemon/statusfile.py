"""``<arena>/daemon/status.json`` and ``<arena>/daemon.lock``: how ``noisefs status`` sees
the daemon. The daemon holds an exclusive ``flock`` on the lock file for its whole life and
rewrites the status file atomically every few seconds; a reader knows the daemon runs when
the lock is held, whatever the file says.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from noisefs.arena.paths import DIR_FLAGS, FILE_FLAGS
from noisefs.errors import ArenaBusy

LOCK_NAME = "daemon.lock"
STATUS_NAME = "status.json"


def take_lock(root_fd: int, root: Path) -> int:
    """Hold ``<root>/daemon.lock`` exclusively (the fd); ``ArenaBusy`` (exit 3) naming the
    holder's pid when another daemon has it."""
    fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | FILE_FLAGS, 0o600, dir_fd=root_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise ArenaBusy(
                f"arena {root} is already policed by the noisefs daemon with pid {holder} "
                f"(it holds {root / LOCK_NAME}); stop it first, one daemon per arena"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def write_status(daemon_fd: int, status: dict) -> None:
    """Replace ``status.json`` in the daemon directory atomically."""
    tmp = f".{STATUS_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | FILE_FLAGS, 0o600, dir_fd=daemon_fd)
    try:
        os.write(fd, json.dumps(status, sort_keys=True).encode())
    finally:
        os.close(fd)
    os.rename(tmp, STATUS_NAME, src_dir_fd=daemon_fd, dst_dir_fd=daemon_fd)


def read_status(root: str | os.PathLike) -> dict | None:
    """The daemon's status for the arena at ``root``: None when no daemon ever ran there;
    otherwise the last status with ``running`` (lock held now) and ``uptime_s``."""
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError:
        return None
    try:
        try:
            lock_fd = os.open(LOCK_NAME, os.O_RDONLY | FILE_FLAGS, dir_fd=root_fd)
        except OSError:
            return None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            running = False
        except OSError:
            running = True
        finally:
            os.close(lock_fd)
        status: dict = {}
        try:
            dfd = os.open("daemon", DIR_FLAGS, dir_fd=root_fd)
            try:
                sfd = os.open(STATUS_NAME, os.O_RDONLY | FILE_FLAGS, dir_fd=dfd)
                with os.fdopen(sfd, "rb") as handle:
                    status = json.loads(handle.read() or b"{}")
            finally:
                os.close(dfd)
        except (OSError, ValueError):
            status = {}
    finally:
        os.close(root_fd)
    status["running"] = running
    if running and "started" in status:
        status["uptime_s"] = round(time.time() - float(status["started"]), 1)
    return status
