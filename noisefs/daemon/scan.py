"""Discovery of inbox files: events as hints, scans as proof, and the inbox's usage.

A :class:`Scanner` lists ``<arena>/inbox/<run>/<step>/`` (relative to directory fds, never
following a symlink), queues every ``*.npy`` not yet known, notes ``DONE`` markers,
measures the bytes and inodes of everything under the inbox (reported to the arena as
foreign usage) and, on periodic rescans, counts the files that no event announced (older
than ``MISSED_AGE_S``).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from noisefs.arena.paths import RUN_NAME
from noisefs.daemon.candidates import Candidates
from noisefs.daemon.dirs import CANONICAL_STEP, STEP_NAME, InboxDirs, opendir

log = logging.getLogger("noisefs.daemon")

MISSED_AGE_S = 2.0  # a file this old found by a rescan and never announced was missed

# reject(run, dir_fd, name, step, reason): move an entry to <run>/rejected/
Reject = Callable[[str, int, str, "int | str", str], None]


class Scanner:
    """Finding candidates in one inbox and measuring it.

    It queues what it finds on ``candidates``, reports ``DONE`` markers to ``note_done``,
    hands misplaced entries to ``reject`` and counts missed events in ``counters``; it owns
    the measured ``usage`` and the figures of the last full scan.
    """

    def __init__(
        self,
        root: Path,
        dirs: InboxDirs,
        candidates: Candidates,
        counters: dict,
        reject: Reject,
        note_done: Callable[[str], None],
    ) -> None:
        self.root = root
        self._dirs = dirs
        self._candidates = candidates
        self._counters = counters
        self._reject = reject
        self._note_done = note_done
        self._prefix = f"{root}{os.sep}inbox{os.sep}"
        self._warned: set[str] = set()
        self.usage = (0, 0)  # bytes, inodes under the inbox at the last full scan
        self.activity = False  # events since the last scan: the measured usage may be stale
        self.scan_cost = 0.0  # seconds the last full scan took (10 000 waiting files: ~0.25 s)
        self.last_scan = 0.0
        self.reopened = False  # the inbox was replaced: the daemon restarts its watch

    # -- discovery ---------------------------------------------------------------------

    def hint(self, path: str, kind: str) -> None:
        """An event about ``path`` (inside this inbox); cheap, since watchdog sends one per
        file (a directory moved in gets one synthetic event per file in it)."""
        self.activity = True
        if not path.startswith(self._prefix):
            return
        rel = path[len(self._prefix) :].split(os.sep)
        if len(rel) == 3 and kind == "file":
            if CANONICAL_STEP.fullmatch(rel[1]) and self._wanted(rel[2]):
                self._candidates.queue((rel[0], int(rel[1]), rel[2], False))
        elif len(rel) == 2 and rel[1] == "DONE":
            self._note_done(rel[0])
        elif kind == "dir" and len(rel) == 1:
            self.scan(rel[0])  # a directory that appears: scan it (its watch came late)
        elif kind == "dir" and len(rel) == 2 and STEP_NAME.fullmatch(rel[1]):
            run_fd = opendir(rel[0], self._dirs.inbox_fd) if RUN_NAME.fullmatch(rel[0]) else None
            if run_fd is not None:
                try:
                    if CANONICAL_STEP.fullmatch(rel[1]):
                        self._scan_step(rel[0], run_fd, rel[1], time.time(), False)
                    else:
                        self._reject_step_dir(rel[0], run_fd, rel[1])
                finally:
                    os.close(run_fd)

    @staticmethod
    def _wanted(name: str) -> bool:
        return name.endswith(".npy") and not name.startswith(".")

    def usage_stale(self, now: float) -> bool:
        """Whether events came since the last full scan, and one is cheap enough now."""
        return self.activity and now - self.last_scan >= 20 * self.scan_cost

    def take_reopened(self) -> bool:
        """Whether the inbox was reopened since the last call (the watch must restart)."""
        reopened, self.reopened = self.reopened, False
        return reopened

    def _check_inbox(self) -> None:
        """Reopen ``<root>/inbox`` when it was removed or replaced; the daemon restarts its
        watch when :attr:`reopened` is set, then rescans."""
        what = self._dirs.reopen_inbox()
        if what:
            self.reopened = True
            log.warning(
                "%s/inbox was %s; reopened it, the watch is restarted and the inbox rescanned",
                self.root,
                what,
            )

    def scan(self, only_run: str | None = None, count_missed: bool = False) -> None:
        """List the inbox (or one run), queue what is there, measure the foreign usage."""
        started = time.perf_counter()
        if only_run is None:
            self._check_inbox()
        inbox_fd = self._dirs.inbox_fd
        now = time.time()
        total_bytes = total_files = 0
        for run in [only_run] if only_run else os.listdir(inbox_fd):
            run_fd = opendir(run, inbox_fd)
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
                    st = os.stat(run, dir_fd=inbox_fd, follow_symlinks=False)
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
        self._dirs.forget_cached()
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

    def _scan_step(
        self, run: str, run_fd: int, step_name: str, now: float, count_missed: bool
    ) -> tuple[int, int]:
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
                if self._candidates.known(key):
                    continue
                if count_missed and now - st.st_mtime > MISSED_AGE_S:
                    self._counters["missed_events"] += 1
                self._candidates.queue(key)
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
