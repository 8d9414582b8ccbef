"""The directories an inbox works through, as descriptors opened without following links.

:class:`InboxDirs` owns ``<root>/inbox``, ``<root>/daemon`` and ``<root>/daemon/claimed``
(made 0700 when missing) and a cache of run and step directories for one pass of work;
it borrows the root's descriptor from the daemon, which holds it as long as the inbox.
Every operation on inbox files is relative to one of these descriptors, so nothing
outside the arena is ever opened.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from noisefs.arena.paths import DIR_FLAGS, RUN_NAME

STEP_NAME = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)
# the canonical spelling of a step: no leading zero ("007" would be reopened as "7")
CANONICAL_STEP = re.compile(r"0|[1-9][0-9]{0,17}")


def opendir(name: str, parent: int) -> int | None:
    """Open a subdirectory without following a symlink; None when it is not one."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None  # gone, a symlink (ELOOP), not a directory


def _subdir(name: str, parent: int) -> int:
    """Open ``name`` under ``parent``, made 0700 first when missing."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    return os.open(name, DIR_FLAGS, dir_fd=parent)


class InboxDirs:
    """The descriptors of one arena's inbox, daemon and claimed directories.

    ``inbox_fd`` changes when :meth:`reopen_inbox` finds the inbox replaced; the run and
    step directories are cached until :meth:`forget_cached` (the end of a pass).
    """

    def __init__(self, root_fd: int, root: Path) -> None:
        self.root = root
        self.root_fd = root_fd  # the daemon's, open as long as this inbox
        self.inbox_fd = self.daemon_fd = self.claimed_fd = -1
        self._cached: dict[tuple[str, int | None], int | None] = {}
        try:
            self.inbox_fd = _subdir("inbox", root_fd)
            self.daemon_fd = _subdir("daemon", root_fd)
            self.claimed_fd = _subdir("claimed", self.daemon_fd)
        except BaseException:  # nothing opened so far is left behind
            self.close()
            raise

    def run_dir(self, run: str) -> int | None:
        """``inbox/<run>`` (cached); None when it is not a directory with a valid run name."""
        key = (run, None)
        if key not in self._cached:
            self._cached[key] = opendir(run, self.inbox_fd) if RUN_NAME.fullmatch(run) else None
        return self._cached[key]

    def step_dir(self, run: str, step: int) -> int | None:
        """``inbox/<run>/<step>`` (cached); None when it is not a directory."""
        key = (run, step)
        if key not in self._cached:
            parent = self.run_dir(run)
            self._cached[key] = None if parent is None else opendir(str(step), parent)
        return self._cached[key]

    def forget_cached(self) -> None:
        """Close the cached run and step directories."""
        for fd in self._cached.values():
            if fd is not None:
                os.close(fd)
        self._cached.clear()

    def reopen_inbox(self) -> str:
        """Reopen ``<root>/inbox`` when it was removed (and maybe recreated) since it was
        opened, since the old descriptor would list a deleted directory for ever; what
        happened to it (``"replaced"``, ``"removed (recreated it)"``), or ``""`` when it
        is the same directory."""
        try:
            now = os.stat("inbox", dir_fd=self.root_fd, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        old = os.fstat(self.inbox_fd)
        same = now is not None and (now.st_dev, now.st_ino) == (old.st_dev, old.st_ino)
        if same and old.st_nlink:
            return ""
        if now is None:
            try:
                os.mkdir("inbox", 0o700, dir_fd=self.root_fd)
            except FileExistsError:
                pass
        fd = os.open("inbox", DIR_FLAGS, dir_fd=self.root_fd)  # a symlink: ELOOP, raised
        self.forget_cached()
        os.close(self.inbox_fd)
        self.inbox_fd = fd
        return "removed (recreated it)" if now is None else "replaced"

    def clear_run(self, run: str) -> None:
        """Remove a finished run's ``DONE``, its emptied step directories and itself when
        empty (a rejected file, or a file arriving meanwhile, keeps its directory)."""
        run_fd = opendir(run, self.inbox_fd)
        if run_fd is None:
            return
        try:
            try:
                os.unlink("DONE", dir_fd=run_fd)
            except (FileNotFoundError, IsADirectoryError):
                pass
            for entry in os.listdir(run_fd):
                if STEP_NAME.fullmatch(entry):
                    try:
                        os.rmdir(entry, dir_fd=run_fd)  # only if empty
                    except OSError:
                        pass
        finally:
            os.close(run_fd)
        try:
            os.rmdir(run, dir_fd=self.inbox_fd)
        except OSError:
            pass

    def close(self) -> None:
        """Close every descriptor this object opened (idempotent); the root's stays open."""
        self.forget_cached()
        for fd in (self.claimed_fd, self.daemon_fd, self.inbox_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.inbox_fd = self.daemon_fd = self.claimed_fd = -1
