"""The daemon process: arenas held, signals, the main loop, shutdown (reload in
:mod:`~noisefs.daemon.reload`, status and metrics in :mod:`~noisefs.daemon.reporting`).

Start: for each arena, take ``<root>/daemon.lock`` (a second daemon exits 3), open an
:class:`~noisefs.arena.Arena` handle with the configured bounds and the inbox (checkpoints
are loaded, claimed files recovered); start the inotify observer, *then* scan every inbox
(a file written before the watch existed is found by the scan). Loop: fold what events and
scans queued, retry files still being written, and on their timers rescan (counting what
events missed), police (watermarks), gc, checkpoint, write ``status.json``, ping systemd's
watchdog and check the observer is alive. SIGHUP reloads the config (all or nothing);
SIGTERM/SIGINT end the loop: checkpoint, write every run's averages so far, exit 0.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from pathlib import Path

from noisefs.arena.paths import open_private_dir
from noisefs.daemon.config import ArenaConfig, DaemonConfig, default_state_dir
from noisefs.daemon.held import Held, adopt_legacy_checkpoints, new_counters, open_arena
from noisefs.daemon.ingest import Inbox
from noisefs.daemon.logs import setup_logging
from noisefs.daemon.metrics import Metrics
from noisefs.daemon.notify import Notifier
from noisefs.daemon.police import Police
from noisefs.daemon.reload import Reloading
from noisefs.daemon.reporting import Reporting
from noisefs.daemon.statusfile import take_lock
from noisefs.daemon.watch import Watcher
from noisefs.errors import NoiseFSError

log = logging.getLogger("noisefs.daemon")

WAKE = ("", "wake", "")
PAUSE_AT = 2000  # queued files that pause inotify (see Daemon._backlog)
RESUME_AT = 100


class Daemon(Reporting, Reloading):
    """``noisefs daemon``; :meth:`run` returns the exit code."""

    def __init__(self, cfg: DaemonConfig, config_path: str | None, overrides: dict) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides
        self.hints: queue.SimpleQueue = queue.SimpleQueue()
        self.held: dict[str, Held] = {}
        self.watcher = Watcher(self.hints)
        self.notifier = Notifier()
        self.metrics = Metrics() if cfg.metrics_port is not None else None
        self.started = time.time()
        self.g = {"reloads_ok": 0, "reloads_error": 0, "started": self.started}
        self._stop = False
        self._reload = False

    # -- arenas ------------------------------------------------------------------------

    def _state_dir(self, cfg: ArenaConfig) -> Path:
        """Where the arena's checkpoints live: keyed by the arena alone, never by the
        results directory (a restart with another ``--results`` must find them)."""
        import hashlib

        tag = hashlib.sha256(str(cfg.root).encode()).hexdigest()[:8]
        state = (self.cfg.state_dir or default_state_dir()) / f"{cfg.root.name}-{tag}"
        adopt_legacy_checkpoints(cfg.results_dir / ".noisefs-daemon" / state.name, state)
        return state

    def _hold(self, cfg: ArenaConfig) -> Held:
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
                inbox = Inbox(root_fd, cfg.root, cfg, self._state_dir(cfg), counters, self.cfg)
            except BaseException:
                arena.close()
                raise
        except BaseException:
            os.close(lock_fd)
            os.close(root_fd)
            raise
        return Held(cfg, root_fd, lock_fd, arena, inbox, counters, Police(counters))

    def _release(self, held: Held) -> None:
        try:
            held.inbox.shutdown()
            self._write_status(held, state="stopped")
        finally:
            held.inbox.close()
            held.close()

    # -- signals -----------------------------------------------------------------------

    def _on_stop(self, signum, frame) -> None:
        self._stop = True
        self.hints.put(WAKE)

    def _on_hup(self, signum, frame) -> None:
        self._reload = True
        self.hints.put(WAKE)

    # -- main --------------------------------------------------------------------------

    def run(self) -> int:
        setup_logging(self.cfg.log_level)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks must never kill us
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            for acfg in self.cfg.arenas:
                self.held[str(acfg.root)] = self._hold(acfg)
                self._warn_private_tmp(self.held[str(acfg.root)])
            if self.metrics is not None:
                port = self.metrics.start(self.cfg.metrics_port or 0)
                log.info("metrics on http://127.0.0.1:%d/metrics", port)
            self._watch()
            for held in self.held.values():
                held.inbox.scan()
            self._tick(force=True)
            log.info("policing %s (%s)", ", ".join(self.held), self.watcher.mode)
            self.notifier.ready(f"policing {len(self.held)} arena(s), {self.watcher.mode}")
            self._loop()
        finally:
            self.notifier.stopping()
            for held in list(self.held.values()):  # what is held first, the observer after
                try:
                    self._release(held)
                except Exception:  # noqa: BLE001 - release the others regardless
                    log.exception("releasing %s failed", held.cfg.root)
            self.held.clear()
            self.watcher.stop()
            if self.metrics is not None:
                self.metrics.stop()
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
        self.watcher.set_paths({k: Path(k) / "inbox" for k in self.held})

    def _loop(self) -> None:
        while not self._stop:
            # files still being written are retried on their own backoff (their close
            # event wakes the loop): only queued work shortens the wait
            busy = any(h.inbox.todo for h in self.held.values())
            try:
                item = self.hints.get(timeout=0.05 if busy else 0.25)
                self._hint(item)
                for _ in range(100_000):
                    self._hint(self.hints.get_nowait())
            except queue.Empty:
                pass
            for held in self.held.values():
                held.inbox.process(0.2)
            self._backlog()
            self._tick()
            if self._reload:
                self._reload = False
                self._do_reload()

    def _backlog(self) -> None:
        """Pause inotify while thousands of files are queued (a backlog is folded faster
        without an event per claim); resume, then rescan, once it is drained."""
        backlog = sum(len(h.inbox.todo) for h in self.held.values())
        if backlog >= PAUSE_AT and not self.watcher.paused and not self.watcher.scan_only:
            log.debug("%d files queued: inotify paused while they are folded", backlog)
            self.watcher.pause()
        elif self.watcher.paused and backlog <= RESUME_AT:
            self.watcher.resume()
            for held in self.held.values():
                held.inbox.scan()

    def _hint(self, item) -> None:
        key, kind, path = item
        held = self.held.get(key)
        if held is not None:
            held.inbox.hint(path, kind)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        last = getattr(self, "_last", {})
        self._last = last
        cfg = self.cfg

        def due(name: str, interval: float) -> bool:
            if force or now - last.get(name, 0.0) >= interval:
                last[name] = now
                return True
            return False

        scan_every = cfg.scan_only_interval_s if self.watcher.scan_only else cfg.scan_interval_s
        # a scan of a large backlog costs: keep rescans under ~5 % of the time
        cost = max((h.inbox.scan_cost for h in self.held.values()), default=0.0)
        if due("scan", max(scan_every, 20 * cost)):
            for held in self.held.values():
                held.inbox.scan(count_missed=not self.watcher.scan_only and not force)
        for held in self.held.values():
            held.inbox.checkpoint(cfg.checkpoint_interval_s)
            held.inbox.finish_ready_runs()
        if due("gc", cfg.gc_interval_s):
            for held in self.held.values():
                self._guard(held, "gc", held.police.gc, held.arena)
        if due("police", cfg.police_interval_s):
            for held in self.held.values():
                inbox = held.inbox  # inbox files count from the moment they exist
                if inbox.activity and now - inbox.last_scan >= 20 * inbox.scan_cost:
                    inbox.scan()
                quota = held.police.figures.get("quota_bytes")
                if quota:  # claimed files awaiting their checkpoint: at most 1/8 of it
                    held.inbox.pending_limit_bytes = max(16 << 20, min(256 << 20, quota // 8))
                self._guard(
                    held, "police", held.police.enforce,
                    held.arena, held.root_fd, held.inbox.usage, held.cfg,
                )  # fmt: skip
            if self.watcher.check():  # observer first, then the rescan it promised
                for held in self.held.values():
                    held.inbox.scan()
            self._publish()
        if due("status", cfg.status_interval_s):
            for held in self.held.values():
                self._write_status(held)
        replaced = [h for h in self.held.values() if h.inbox.reopened]
        if replaced:  # an inbox removed and recreated: watch it afresh, then rescan it
            self.watcher.restart()
            for held in replaced:
                held.inbox.reopened = False
                held.inbox.scan()
        wd = self.notifier.watchdog_interval_s
        if wd and due("watchdog", wd):
            self.notifier.watchdog()

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
