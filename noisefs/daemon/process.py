"""The daemon process: signals, the main loop, shutdown. Its parts: the arenas held
(:mod:`~noisefs.daemon.arenas`, taken by :func:`~noisefs.daemon.held.hold`), status and
metrics (:mod:`~noisefs.daemon.reporting`), reload (:mod:`~noisefs.daemon.reload`).

Start: for each arena, take ``<root>/daemon.lock`` (a second daemon exits 3), open an
:class:`~noisefs.arena.Arena` handle with the configured bounds and the inbox (checkpoints
are loaded, claimed files recovered); start the inotify observer, *then* scan every inbox
(a file written before the watch existed is found by the scan). Loop: fold what events and
scans queued, retry files still being written, and run the timer table
(:mod:`~noisefs.daemon.timers`): rescan (counting what events missed), checkpoint and
finish runs, gc, police (watermarks, observer liveness, metrics), write ``status.json``,
watch replaced inboxes afresh, ping systemd's watchdog. SIGHUP reloads the config (all or
nothing); SIGTERM/SIGINT end the loop: checkpoint, write every run's averages so far,
exit 0.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from pathlib import Path

from noisefs.daemon.arenas import Arenas
from noisefs.daemon.config import DaemonConfig
from noisefs.daemon.held import Held, hold
from noisefs.daemon.logs import set_level, setup_logging
from noisefs.daemon.metrics import Metrics
from noisefs.daemon.notify import Notifier
from noisefs.daemon.reload import Reloader
from noisefs.daemon.reporting import Reporter
from noisefs.daemon.timers import Periodic, run_due
from noisefs.daemon.watch import Watcher
from noisefs.errors import NoiseFSError

log = logging.getLogger("noisefs.daemon")

WAKE = ("", "wake", "")
PAUSE_AT = 2000  # queued files that pause inotify (see Daemon._backlog)
RESUME_AT = 100


class Daemon:
    """``noisefs daemon``; :meth:`run` returns the exit code.

    Its parts: the :class:`~noisefs.daemon.watch.Watcher` (events as hints on one queue),
    the held :class:`~noisefs.daemon.arenas.Arenas` (each with its inbox and police), the
    :class:`~noisefs.daemon.reporting.Reporter` (status files, metrics), the
    :class:`~noisefs.daemon.reload.Reloader` (SIGHUP) and the systemd
    :class:`~noisefs.daemon.notify.Notifier`. The daemon runs the loop: hints to the
    inboxes, ingest, and the periodic work of its timer table.
    """

    def __init__(self, cfg: DaemonConfig, config_path: str | None, overrides: dict) -> None:
        self.cfg = cfg
        self._hints: queue.SimpleQueue = queue.SimpleQueue()
        self._watcher = Watcher(self._hints)
        self._notifier = Notifier()
        self._metrics = Metrics() if cfg.metrics_port is not None else None
        self._reporter = Reporter(self._watcher, self._metrics, config_path)
        self._arenas = Arenas(self._reporter)
        self._reloader = Reloader(
            config_path, overrides, self._arenas, self._reporter, self._resume
        )
        self._timers = [  # in this order at each tick
            Periodic("scan", self._scan_interval, self._rescan),
            Periodic("ingest", lambda: 0.0, self._checkpoint_and_finish),
            Periodic("gc", lambda: self.cfg.gc_interval_s, self._gc),
            Periodic("police", lambda: self.cfg.police_interval_s, self._police),
            Periodic("status", lambda: self.cfg.status_interval_s, self._status),
            Periodic("inboxes", lambda: 0.0, self._rewatch_replaced),
            Periodic("watchdog", lambda: self._notifier.watchdog_interval_s or None, self._ping),
        ]
        self._stop = False
        self._reload = False

    # -- signals -----------------------------------------------------------------------

    def _on_stop(self, signum, frame) -> None:
        self._stop = True
        self._hints.put(WAKE)

    def _on_hup(self, signum, frame) -> None:
        self._reload = True
        self._hints.put(WAKE)

    # -- main --------------------------------------------------------------------------

    def run(self) -> int:
        """Hold the arenas, watch them and police them until SIGTERM/SIGINT; 0."""
        setup_logging(self.cfg.log_level)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks must never kill us
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            for acfg in self.cfg.arenas:
                held = hold(acfg, self.cfg)
                self._arenas.add(held)
                self._warn_private_tmp(held)
            if self._metrics is not None:
                port = self._metrics.start(self.cfg.metrics_port or 0)
                log.info("metrics on http://127.0.0.1:%d/metrics", port)
            self._watch()
            for held in self._arenas.values():
                held.inbox.scan()
            self._tick(force=True)
            log.info("policing %s (%s)", ", ".join(self._arenas), self._watcher.mode)
            self._notifier.ready(f"policing {len(self._arenas)} arena(s), {self._watcher.mode}")
            self._loop()
        finally:
            self._notifier.stopping()
            self._arenas.release_all()  # what is held first, the observer after
            self._watcher.stop()
            if self._metrics is not None:
                self._metrics.stop()
        log.info("stopped")
        return 0

    @staticmethod
    def _warn_private_tmp(held: Held) -> None:
        spill = str(getattr(held.arena, "spill_dir", ""))
        if os.environ.get("INVOCATION_ID") and spill.startswith(("/tmp/", "/var/tmp/")):
            log.warning(
                "%s: spill directory %s is under /tmp; with systemd's PrivateTmp=yes it is "
                "this service's own (gone at stop, unseen by other processes): move it",
                held.cfg.root,
                spill,
            )

    def _watch(self) -> None:
        self._watcher.set_paths({k: Path(k) / "inbox" for k in self._arenas})

    def _loop(self) -> None:
        while not self._stop:
            # files still being written are retried on their own backoff (their close
            # event wakes the loop): only queued work shortens the wait
            busy = any(h.inbox.todo for h in self._arenas.values())
            try:
                item = self._hints.get(timeout=0.05 if busy else 0.25)
                self._hint(item)
                for _ in range(100_000):
                    self._hint(self._hints.get_nowait())
            except queue.Empty:
                pass
            for held in self._arenas.values():
                held.inbox.process(0.2)
            self._backlog()
            self._tick()
            if self._reload:
                self._reload = False
                self._do_reload()

    def _backlog(self) -> None:
        """Pause inotify while thousands of files are queued (a backlog is folded faster
        without an event per claim); resume, then rescan, once it is drained."""
        backlog = sum(len(h.inbox.todo) for h in self._arenas.values())
        if backlog >= PAUSE_AT and not self._watcher.paused and not self._watcher.scan_only:
            log.debug("%d files queued: inotify paused while they are folded", backlog)
            self._watcher.pause()
        elif self._watcher.paused and backlog <= RESUME_AT:
            self._watcher.resume()
            for held in self._arenas.values():
                held.inbox.scan()

    def _hint(self, item) -> None:
        key, kind, path = item
        held = self._arenas.get(key)
        if held is not None:
            held.inbox.hint(path, kind)

    # -- reload ------------------------------------------------------------------------

    def _do_reload(self) -> None:
        self._notifier.reloading()
        try:
            self._reloader.reload(self.cfg)
        finally:
            for held in self._arenas.values():
                self._reporter.write_status(held)
            self._notifier.ready(f"policing {len(self._arenas)} arena(s), {self._watcher.mode}")

    def _resume(self, cfg: DaemonConfig, taken: list[str]) -> None:
        """Run with a reloaded configuration: watch the arenas now held, scan the new ones,
        then a forced tick."""
        self.cfg = cfg
        set_level(cfg.log_level)
        self._watch()
        for root in taken:
            self._arenas[root].inbox.scan()
        self._tick(force=True)

    # -- periodic work (the timer table) -----------------------------------------------

    def _tick(self, force: bool = False) -> None:
        run_due(self._timers, time.monotonic(), force)

    def _scan_interval(self) -> float:
        every = (
            self.cfg.scan_only_interval_s if self._watcher.scan_only else self.cfg.scan_interval_s
        )
        # a scan of a large backlog costs: keep rescans under ~5 % of the time
        cost = max((h.inbox.scan_cost for h in self._arenas.values()), default=0.0)
        return max(every, 20 * cost)

    def _rescan(self, now: float, forced: bool) -> None:
        for held in self._arenas.values():
            held.inbox.scan(count_missed=not self._watcher.scan_only and not forced)

    def _checkpoint_and_finish(self, now: float, forced: bool) -> None:
        for held in self._arenas.values():
            held.inbox.checkpoint(self.cfg.checkpoint_interval_s)
            held.inbox.finish_ready_runs()

    def _gc(self, now: float, forced: bool) -> None:
        for held in self._arenas.values():
            self._guard(held, "gc", held.police.gc, held.arena)

    def _police(self, now: float, forced: bool) -> None:
        for held in self._arenas.values():
            held.inbox.refresh_usage(now)  # inbox files count from the moment they exist
            quota = held.police.figures.get("quota_bytes")
            max_files = held.police.figures.get("max_files")
            if quota and max_files:  # claimed files awaiting their checkpoint: 1/8 of the
                # bounds (a 16 MiB floor once let 4 MiB arenas hold 16 MiB of them, and
                # their count was bounded by nothing but 2048)
                held.inbox.set_pending_limit(min(256 << 20, quota // 8), max(1, max_files // 8))
            self._guard(
                held, "police", held.police.enforce,
                held.arena, held.root_fd, held.inbox.usage, held.cfg,
            )  # fmt: skip
            room = held.police.claim_room()
            if room is not None:
                held.inbox.set_claim_room(*room)
        if self._watcher.check():  # observer first, then the rescan it promised
            for held in self._arenas.values():
                held.inbox.scan()
        self._reporter.publish(self._arenas)

    def _status(self, now: float, forced: bool) -> None:
        for held in self._arenas.values():
            self._reporter.write_status(held)

    def _rewatch_replaced(self, now: float, forced: bool) -> None:
        replaced = [h for h in self._arenas.values() if h.inbox.take_reopened()]
        if replaced:  # an inbox removed and recreated: watch it afresh, then rescan it
            self._watcher.restart()
            for held in replaced:
                held.inbox.scan()

    def _ping(self, now: float, forced: bool) -> None:
        self._notifier.watchdog()

    def _guard(self, held: Held, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except (NoiseFSError, OSError) as exc:
            log.error("%s: %s failed: %s (retried next time)", held.cfg.root, what, exc)
        except Exception:  # noqa: BLE001 - a bug in one tick must not stop ingest
            log.exception("%s: %s failed (a bug; retried next time)", held.cfg.root, what)


def run_daemon(cfg: DaemonConfig, config_path: str | None, overrides: dict) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit code."""
    return Daemon(cfg, config_path, overrides).run()
