"""Filesystem events from ``watchdog`` (inotify), reduced to hints on a queue.

Events are hints, never proof: the ingest side re-checks everything it is told about and
rescans on its own schedule. The handler never raises (an exception in a watchdog handler
would end the observer thread); the observer's and its emitters' liveness is checked by
:meth:`Watcher.check`, which restarts a dead observer. When inotify's limits are hit
(``ENOSPC``: ``max_user_watches``; ``EMFILE``: ``max_user_instances``) the watcher switches to
scan-only mode: the daemon then rescans every ``scan_only_interval_s``.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from noisefs import faults

log = logging.getLogger("noisefs.daemon")

EVENTS = [DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent]


class InboxHandler(FileSystemEventHandler):
    """Puts ``(arena_key, kind, path)`` on a queue; ``kind`` is ``file`` or ``dir``."""

    def __init__(self, hints: queue.SimpleQueue, key: str) -> None:
        super().__init__()
        self._hints = hints
        self._key = key
        self.errors = 0

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            moved = isinstance(event, FileMovedEvent | DirMovedEvent)
            path = event.dest_path if moved else event.src_path
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            self._hints.put((self._key, "dir" if event.is_directory else "file", path))
        except Exception:  # noqa: BLE001 - a handler must never end the observer thread
            self.errors += 1
            log.exception("event handler failed on %r (the next rescan covers it)", event)


class Watcher:
    """One watchdog observer for every arena's inbox, or scan-only mode."""

    def __init__(self, hints: queue.SimpleQueue) -> None:
        self._hints = hints
        self._paths: dict[str, Path] = {}
        self._observer = None
        self.scan_only = False
        self.paused = False
        self.reason = ""
        self.restarts = 0
        self.fallbacks = 0

    @property
    def mode(self) -> str:
        """``inotify`` or ``scan-only``."""
        return "scan-only" if self.scan_only else "inotify"

    def set_paths(self, paths: dict[str, Path]) -> None:
        """Watch exactly these inbox directories (restarts the observer when they change)."""
        if paths != self._paths:
            self._paths = dict(paths)
            if not self.scan_only and not self.paused:
                self._restart()

    def _start(self) -> None:
        # lazy: watchdog's observer starts with the watch, not with the import
        from watchdog.observers import inotify_move_event_grouper as grouper
        from watchdog.observers.inotify import InotifyObserver

        # watchdog holds every IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and
        # its queue is FIFO: each claim (a rename out of the watched tree, never paired)
        # would hold back every later event by 0.5 s. Only destinations matter here (a
        # pair split in two still names the new path), so nothing is held back.
        if hasattr(grouper, "InotifyMoveEventGrouper"):
            grouper.InotifyMoveEventGrouper.delay = 0.0

        if faults.fires("daemon.inotify-fails"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached (simulated)")
        observer = InotifyObserver(timeout=0.2)
        try:
            for key, path in self._paths.items():
                observer.schedule(
                    InboxHandler(self._hints, key), str(path), recursive=True, event_filter=EVENTS
                )
            observer.daemon = True
            observer.start()
        except BaseException:
            observer.stop()
            raise
        self._observer = observer

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            quiet = logging.getLogger("watchdog")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)  # its emitters complain when stopped mid-read
            try:
                observer.stop()
                observer.join(timeout=0.5)  # daemon threads: never hold up a stop
            except Exception:  # noqa: BLE001 - a broken observer is dropped either way
                log.debug("stopping the observer failed", exc_info=True)
            finally:
                quiet.setLevel(level)

    def _restart(self) -> None:
        self._stop_observer()
        if not self._paths:
            return
        try:
            self._start()
        except FileNotFoundError as exc:  # an inbox removed just now: retried by check()
            log.warning("cannot watch an inbox (%s); retried shortly", exc)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EMFILE, errno.ENOMEM):
                raise
            self.scan_only = True
            self.fallbacks += 1
            self.reason = str(exc.strerror or exc)
            log.warning(
                "inotify unavailable (%s): scan-only mode, rescanning every few tenths of a "
                "second; raise fs.inotify.max_user_watches / max_user_instances and restart "
                "the daemon to get events back",
                self.reason,
            )

    def restart(self) -> None:
        """Watch the same paths afresh (a watched inbox was replaced: its watch is gone)."""
        if not self.scan_only and not self.paused:
            self._restart()

    def pause(self) -> None:
        """Stop the observer while a backlog is folded: every claim is an inotify event
        that watchdog's threads would handle under the GIL (halving ingest). The caller
        rescans after :meth:`resume` (observer first, then scan: nothing is missed)."""
        if not self.scan_only and not self.paused:
            self.paused = True
            self._stop_observer()

    def resume(self) -> None:
        """Restart the observer after :meth:`pause`; the caller then rescans."""
        if self.paused:
            self.paused = False
            self._restart()

    def alive(self) -> bool:
        """True when the observer thread and all its emitters run."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(e.is_alive() for e in list(observer.emitters))

    def check(self) -> bool:
        """Restart a dead observer (a limit hit while adding a watch, or its watched inbox
        removed, ends its emitter); True when it did: the caller then rescans every inbox
        (events were lost while it was dead)."""
        if self._die_hook():
            return False
        if self.scan_only or self.paused or not self._paths or self.alive():
            return False
        self.restarts += 1
        log.warning("the inotify observer stopped; restarting it (a rescan follows)")
        self._restart()
        return True

    def _die_hook(self) -> bool:
        """The fault point ``daemon.observer-dies``: its marker file says "kill" to stop the
        emitters (as a watch limit hit in a new directory does), then "dead" while it
        stays; the death is noticed once the test removes it."""
        marker = faults.setting("daemon.observer-dies")
        if not marker or self._observer is None:
            return False
        try:
            with open(marker, "r+") as handle:
                if handle.read().strip() == "kill":
                    for emitter in list(self._observer.emitters):
                        emitter.stop()
                        emitter.join(timeout=1.0)
                    handle.seek(0)
                    handle.write("dead")
                    handle.truncate()
        except FileNotFoundError:
            return False
        return True

    def stop(self) -> None:
        """Stop watching."""
        self._stop_observer()
