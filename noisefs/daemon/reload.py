"""SIGHUP: reread the config, validate it, apply it all or nothing.

New arenas are taken and changed bounds stored first; if anything fails the old
configuration stays, with an error line, and everything opened for the new one is closed
(inbox fds and checkpoint thread included). A changed ``results`` is applied fully (runs in
progress write there); ``metrics_port`` and ``state_dir`` wait for the next start.

Mixed into :class:`~noisefs.daemon.process.Daemon`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from noisefs.daemon.config import ArenaConfig, DaemonConfig, load_config
from noisefs.daemon.held import Held, open_arena
from noisefs.daemon.logs import set_level
from noisefs.errors import InputError, NoiseFSError

log = logging.getLogger("noisefs.daemon")


class Reloading:
    """Config reload; expects the attributes and methods :class:`Daemon` sets up."""

    def _do_reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path, self.overrides)
            self._apply(new)
        except (InputError, NoiseFSError, OSError) as exc:
            self.g["reloads_error"] += 1
            log.error("reload refused, the running configuration stays: %s", exc)
        else:
            self.g["reloads_ok"] += 1
            log.info("reloaded %s", self.config_path or "the command line")
        finally:
            for held in self.held.values():
                self._write_status(held)
            self.notifier.ready(f"policing {len(self.held)} arena(s), {self.watcher.mode}")

    def _apply(self, new: DaemonConfig) -> None:
        """All or nothing: open what is new or changed first, then swap, then release."""
        old_by_root = {str(h.cfg.root): h for h in self.held.values()}
        new_by_root = {str(a.root): a for a in new.arenas}
        opened: dict[str, Held] = {}
        reopened: dict[str, object] = {}
        bounds = ("quota_bytes", "max_files", "spill_dir", "spill_quota_bytes")
        try:
            for root, acfg in new_by_root.items():
                held = old_by_root.get(root)
                if held is None:
                    opened[root] = self._hold(acfg)
                else:
                    if acfg.results_dir != held.cfg.results_dir:  # usable before the swap
                        acfg.results_dir.mkdir(parents=True, exist_ok=True)
                    if any(getattr(acfg, b) != getattr(held.cfg, b) for b in bounds):
                        reopened[root] = open_arena(acfg)
        except BaseException:
            for h in opened.values():
                h.inbox.close()  # its fds and checkpoint thread, then the arena and lock
                h.close()
            for root, arena in reopened.items():
                arena.close()
                old = old_by_root[root].arena  # store the old bounds again
                open_arena(
                    ArenaConfig(
                        root=Path(root),
                        quota_bytes=old.quota_bytes,
                        max_files=old.max_files,
                        spill_dir=old.spill_dir,
                        spill_quota_bytes=old.spill_quota_bytes,
                    )
                ).close()
            raise
        if new.metrics_port != self.cfg.metrics_port:
            log.warning("metrics_port changes take effect at the next start")
            new = type(new)(**{**new.__dict__, "metrics_port": self.cfg.metrics_port})
        if new.state_dir != self.cfg.state_dir:
            log.warning("state_dir changes take effect at the next start")
            new = type(new)(**{**new.__dict__, "state_dir": self.cfg.state_dir})
        for root, held in old_by_root.items():
            if root not in new_by_root:
                self._release(held)
                del self.held[root]
        for root, arena in reopened.items():
            held = self.held[root]
            held.arena.close()
            held.arena = arena
            held.police.reset()  # the new handle reports the inbox's usage afresh
        for root, acfg in new_by_root.items():
            if root in self.held and acfg.results_dir != self.held[root].cfg.results_dir:
                # applied fully: the runs in progress keep their averages (the checkpoints
                # are keyed by the arena) and write their results to the new directory
                runs = self.held[root].inbox.runs
                for average in runs.values():
                    average.results_dir = acfg.results_dir
                log.info(
                    "%s: results now go to %s (%d runs in progress carried over)",
                    root, acfg.results_dir, len(runs),
                )  # fmt: skip
            if root in self.held:
                self.held[root].cfg = acfg
                self.held[root].inbox.cfg = acfg
                self.held[root].inbox.settle_s = new.settle_s
                self.held[root].inbox.done_grace_s = new.done_grace_s
        self.held.update(opened)
        self.cfg = new
        set_level(new.log_level)
        self._watch()
        for root in opened:
            self.held[root].inbox.scan()
        self._tick(force=True)
