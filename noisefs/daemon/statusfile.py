"""``<arena>/daemon/status.json`` and ``<arena>/daemon.lock``: how ``noisefs status`` sees
the daemon. The daemon holds the lock file for its whole life with two locks on one open
file description: an exclusive ``flock`` (one daemon per arena, as every version took it)
and an OFD write lock (``F_OFD_SETLK``) that readers *probe* with ``F_OFD_GETLK``, which
takes nothing: a ``noisefs status`` running at the instant a daemon starts can never make
it fail. The status file is rewritten atomically every few seconds; a reader knows the
daemon runs when the lock is held, whatever the file says.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import time
from pathlib import Path

from noisefs.arena.paths import DIR_FLAGS, FILE_FLAGS
from noisefs.errors import ArenaBusy

LOCK_NAME = "daemon.lock"
STATUS_NAME = "status.json"
LOCK_RETRY_S = 1.0  # a lock seen busy is retried this long (an older `noisefs status`
# holds LOCK_SH for an instant; a daemon that just took it writes its pid an instant later)

# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding)
_FLOCK = "hhqqi4x"
_OFD = hasattr(fcntl, "F_OFD_GETLK") and struct.calcsize(_FLOCK) == 32


def _ofd(fd: int, cmd: int, kind: int) -> int:
    """One OFD lock request on the whole file; the ``l_type`` the kernel returns."""
    arg = struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)
    return struct.unpack(_FLOCK, fcntl.fcntl(fd, cmd, arg))[0]


def _live_pid(fd: int) -> int | None:
    """The pid written in the lock file, if that process is alive."""
    try:
        pid = int(os.pread(fd, 32, 0).decode(errors="replace").strip())
    except ValueError:
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return pid


def take_lock(root_fd: int, root: Path) -> int:
    """Hold ``<root>/daemon.lock`` exclusively (the fd); ``ArenaBusy`` (exit 3) when another
    daemon has it, naming its pid when that pid is known to be alive. A busy lock is
    retried for ``LOCK_RETRY_S`` first."""
    fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | FILE_FLAGS, 0o600, dir_fd=root_fd)
    deadline = time.monotonic() + LOCK_RETRY_S
    holder = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
        holder = _live_pid(fd)
        if time.monotonic() >= deadline:
            os.close(fd)
            who = f"the noisefs daemon with pid {holder}" if holder else "another noisefs daemon"
            raise ArenaBusy(
                f"arena {root} is already policed by {who} (it holds {root / LOCK_NAME}); "
                "stop it first, one daemon per arena",
                holder_pid=holder,
            ) from None
        time.sleep(0.05)
    if _OFD:
        try:
            _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK)  # what readers probe
        except OSError:
            os.close(fd)
            raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _held(lock_fd: int) -> bool:
    """Whether a daemon holds the lock file, without taking any lock."""
    if _OFD:
        try:
            return _ofd(lock_fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK) != fcntl.F_UNLCK
        except OSError:
            pass
    return _live_pid(lock_fd) is not None  # no OFD locks here: the pid written last


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
            running = _held(lock_fd)
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
