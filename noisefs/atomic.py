"""Atomic file publication: write beside the target, fsync, rename. No partial file ever."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from noisefs import faults
from noisefs.errors import InputError, OutputError


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else the common 022."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: int = 0o666, fault: str | None = None
) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block completes; its mode is
    ``mode`` less the umask, as for any new file. ``fault``: the hold point (noisefs.faults)
    between the complete temporary file and its rename.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode & ~_umask())
        if fault is not None:
            faults.hold_at(fault)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(path: str | os.PathLike, option: str = "--output") -> None:
    """Raise ``InputError`` now, before any work, when ``path`` could not be written later."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {target} is a directory; give a file name")
    if not target.parent.is_dir():
        raise InputError(f"{option} {target}: directory {target.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
    except OSError as exc:
        raise InputError(
            f"{option} {target}: cannot write in {target.parent}: {exc.strerror}"
        ) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "result file") -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a one-line :class:`OutputError`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"could not write the {what} {path}: {exc.strerror or exc}") from exc


def remove_stale_temps(path: str | os.PathLike, min_age_s: float = 5.0) -> int:
    """Remove temporary files that an :func:`atomic_write` of ``path`` killed midway left
    (``.<name>.*.tmp``, older than ``min_age_s``); return how many went."""
    target = Path(path)
    removed = 0
    for temp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - temp.lstat().st_mtime >= min_age_s and temp.is_file():
                temp.unlink()
                removed += 1
    return removed
