"""Discovery of inbox files: events as hints, scans as proof, and the inbox's usage.

Mixed into :class:`~noisefs.daemon.ingest.Inbox`. A scan lists ``<arena>/inbox/<run>/<step>/``
(relative to directory fds, never following a symlink), queues every ``*.npy`` not yet
known, notes ``DONE`` markers, measures the bytes and inodes of everything under the inbox
(reported to the arena as foreign usage) and, on periodic rescans, counts the files that
no event announced (older than ``MISSED_AGE_S``).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time

from noisefs.arena.paths import DIR_FLAGS, RUN_NAME

log = logging.getLogger("noisefs.daemon")

STEP_NAME = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)
# the canonical spelling of a step: no leading zero ("007" would be reopened as "7")
CANONICAL_STEP = re.compile(r"0|[1-9][0-9]{0,17}")
MISSED_AGE_S = 2.0  # a file this old found by a rescan and never announced was missed


def opendir(name: str, parent: int) -> int | None:
    """Open a subdirectory without following a symlink; None when it is not one."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None  # gone, a symlink (ELOOP), not a directory


class Scanner:
    """Finding candidates; expects the attributes :class:`Inbox` sets up."""

    activity = False  # events since the last scan: the measured usage may be stale
    scan_cost = 0.0  # seconds the last full scan took (10 000 waiting files: ~0.25 s)
    last_scan = 0.0

    # -- discovery ---------------------------------------------------------------------

    def hint(self, path: str, kind: str) -> None:
        """An event about ``path`` (inside this inbox); cheap, since watchdog sends one per
        file (a directory moved in gets one synthetic event per file in it)."""
        self.activity = True
        prefix = self._prefix
        if not path.startswith(prefix):
            return
        rel = path[len(prefix) :].split(os.sep)
        if len(rel) == 3 and kind == "file":
            if CANONICAL_STEP.fullmatch(rel[1]) and self._wanted(rel[2]):
                self.todo.setdefault((rel[0], int(rel[1]), rel[2], False), time.monotonic())
        elif len(rel) == 2 and rel[1] == "DONE":
            self._note_done(rel[0])
        elif kind == "dir" and len(rel) == 1:
            self.scan(rel[0])  # a directory that appears: scan it (its watch came late)
        elif kind == "dir" and len(rel) == 2 and STEP_NAME.fullmatch(rel[1]):
            run_fd = opendir(rel[0], self.inbox_fd) if RUN_NAME.fullmatch(rel[0]) else None
            if run_fd is not None:
                try:
                    if CANONICAL_STEP.fullmatch(rel[1]):
                        self._scan_step(rel[0], run_fd, rel[1], time.time(), False)
                    else:
                        self._reject_step_dir(rel[0], run_fd, rel[1])
                finally:
                    os.close(run_fd)

    @property
    def _prefix(self) -> str:
        return f"{self.root}{os.sep}inbox{os.sep}"

    @staticmethod
    def _wanted(name: str) -> bool:
        return name.endswith(".npy") and not name.startswith(".")

    def _note_done(self, run: str) -> None:
        if run not in self.done:
            self.done[run] = time.monotonic() + self.done_grace_s

    def _check_inbox(self) -> None:
        """Reopen ``<root>/inbox`` when it was removed (and maybe recreated) since it was
        opened: the old fd would list a deleted directory for ever. The daemon restarts
        its watch when :attr:`reopened` is set, then rescans."""
        try:
            now = os.stat("inbox", dir_fd=self.root_fd, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        old = os.fstat(self.inbox_fd)
        same = now is not None and (now.st_dev, now.st_ino) == (old.st_dev, old.st_ino)
        if same and old.st_nlink:
            return
        if now is None:
            try:
                os.mkdir("inbox", 0o700, dir_fd=self.root_fd)
            except FileExistsError:
                pass
        fd = os.open("inbox", DIR_FLAGS, dir_fd=self.root_fd)  # a symlink: ELOOP, raised
        self._close_dirs()
        os.close(self.inbox_fd)
        self.inbox_fd = fd
        self.reopened = True
        log.warning(
            "%s/inbox was %s; reopened it, the watch is restarted and the inbox rescanned",
            self.root,
            "removed (recreated it)" if now is None else "replaced",
        )

    def scan(self, only_run: str | None = None, count_missed: bool = False) -> None:
        """List the inbox (or one run), queue what is there, measure the foreign usage."""
        started = time.perf_counter()
        if only_run is None:
            self._check_inbox()
        now = time.time()
        total_bytes = total_files = 0
        for run in [only_run] if only_run else os.listdir(self.inbox_fd):
            run_fd = opendir(run, self.inbox_fd)
            if run_fd is None or not RUN_NAME.fullmatch(run):
                if run_fd is not None:
                    os.close(run_fd)
                if run not in self._warned and not run.startswith("."):
                    self._warned.add(run)
                    log.warning(
                        "%s/inbox/%s ignored: not a directory with a valid run name (1-128 of "
                        "A-Z a-z 0-9 _ . -, not starting with . or -); left untouched",
                        self.root,
                        run,
                    )
                try:  # a stray entry: counted, never touched
                    st = os.stat(run, dir_fd=self.inbox_fd, follow_symlinks=False)
                    total_bytes, total_files = total_bytes + st.st_blocks * 512, total_files + 1
                except FileNotFoundError:
                    pass
                continue
            st = os.fstat(run_fd)
            total_bytes, total_files = total_bytes + st.st_blocks * 512, total_files + 1
            try:
                for entry in os.scandir(run_fd):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    total_bytes += st.st_blocks * 512
                    total_files += 1
                    if entry.name == "DONE":
                        self._note_done(run)
                    elif not CANONICAL_STEP.fullmatch(entry.name) and (
                        STEP_NAME.fullmatch(entry.name) and stat.S_ISDIR(st.st_mode)
                    ):
                        self._reject_step_dir(run, run_fd, entry.name)
                    elif STEP_NAME.fullmatch(entry.name) and stat.S_ISDIR(st.st_mode):
                        b, f = self._scan_step(run, run_fd, entry.name, now, count_missed)
                        total_bytes, total_files = total_bytes + b, total_files + f
                    elif STEP_NAME.fullmatch(entry.name) and stat.S_ISLNK(st.st_mode):
                        self._reject(run, run_fd, entry.name, int(entry.name), "symlink")
                    elif entry.name == "rejected" and stat.S_ISDIR(st.st_mode):
                        b, f = self._measure(run_fd, "rejected")
                        total_bytes, total_files = total_bytes + b, total_files + f
            except OSError as exc:  # an unreadable directory: reported once, left alone
                if run not in self._warned:
                    self._warned.add(run)
                    log.warning("%s/inbox/%s cannot be scanned: %s", self.root, run, exc)
            finally:
                os.close(run_fd)
        self._close_dirs()
        if only_run is None:  # the arena measures daemon/ (claimed files) itself
            self.usage = (total_bytes, total_files)
            self.activity = False
            self.scan_cost = time.perf_counter() - started
            self.last_scan = time.monotonic()

    def _reject_step_dir(self, run: str, run_fd: int, name: str) -> None:
        """A step directory spelled with leading zeros (``007``): steps are integers and
        ``007`` and ``7`` would be the same step, so the directory is moved whole to
        ``rejected/`` (reason ``step_name``), its files untouched."""
        self._reject(run, run_fd, name, name, "step_name")

    def _scan_step(self, run, run_fd, step_name, now, count_missed) -> tuple[int, int]:
        step_fd = opendir(step_name, run_fd)
        if step_fd is None:
            return 0, 0
        nbytes = nfiles = 0
        try:
            for entry in os.scandir(step_fd):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                nbytes += st.st_blocks * 512
                nfiles += 1
                if not self._wanted(entry.name):
                    continue
                key = (run, int(step_name), entry.name, False)
                if key in self.todo or key in self.waiting:
                    continue
                if count_missed and now - st.st_mtime > MISSED_AGE_S:
                    self.c["missed_events"] += 1
                self.todo[key] = time.monotonic()
        finally:
            os.close(step_fd)
        return nbytes, nfiles

    def _measure(self, parent_fd: int, name: str) -> tuple[int, int]:
        fd = opendir(name, parent_fd)
        if fd is None:
            return 0, 0
        nbytes = nfiles = 0
        try:
            for entry in os.scandir(fd):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                nbytes, nfiles = nbytes + st.st_blocks * 512, nfiles + 1
                if stat.S_ISDIR(st.st_mode):  # a rejected step directory: its files count
                    b, f = self._measure(fd, entry.name)
                    nbytes, nfiles = nbytes + b, nfiles + f
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
        return nbytes, nfiles
