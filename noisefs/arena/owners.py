"""Owner lock files: one per open ``Arena`` handle, held with ``flock`` for its lifetime.

A process is dead iff ``flock(LOCK_EX | LOCK_NB)`` on its lock file succeeds (the kernel
drops flocks when the last descriptor closes, however the process died). A lock file that
exists unlocked, or is missing, while its pid is alive and it is younger than
``STARTING_GRACE_S`` belongs to a handle that is still starting up and is left alone.
Lock descriptors are ``O_CLOEXEC``; a child made with ``fork()`` (no exec) shares the lock,
so the owner counts as alive while such a child lives.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time

from noisefs.arena.paths import FILE_FLAGS

STARTING_GRACE_S = 5.0


def new_lock_name() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}.lock"


def create_lock(owners_fd: int, name: str) -> int:
    """Create and lock ``name``; return the descriptor that holds the lock."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600, dir_fd=owners_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: a zombie (killed, not yet reaped by its
    parent) answers ``kill(pid, 0)`` but will never finish starting up, so it is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (R, S, Z ...); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name in parentheses may itself hold spaces and parentheses
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0].decode() if fields else None


def try_take(owners_fd: int, name: str, pid: int, started: float) -> tuple[str, int | None]:
    """Probe an owner: ``('live', None)``, ``('starting', None)`` or ``('dead', fd)``.

    For a dead owner the returned fd holds its lock (or is None when the file is gone);
    the caller reclaims, unlinks the lock file, then closes the fd.
    """
    young = (time.time() - started) < STARTING_GRACE_S and pid_alive(pid)
    try:
        fd = os.open(name, os.O_RDWR | FILE_FLAGS, dir_fd=owners_fd)
    except FileNotFoundError:
        return ("starting", None) if young else ("dead", None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return "live", None
        raise
    if young:
        os.close(fd)
        return "starting", None
    return "dead", fd


def is_live(owners_fd: int, name: str, pid: int, started: float) -> bool:
    """Read-only liveness probe (for status): does not keep any lock."""
    state, fd = try_take(owners_fd, name, pid, started)
    if fd is not None:
        os.close(fd)
    return state != "dead"
