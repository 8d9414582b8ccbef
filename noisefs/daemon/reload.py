"""SIGHUP: reread the config, validate it, apply it all or nothing.

New arenas are taken and changed bounds stored first; if anything fails the old
configuration stays, with an error line, and everything opened for the new one is closed
(inbox fds and checkpoint thread included). A changed ``results`` is applied fully (runs in
progress write there); ``metrics_port`` and ``state_dir`` wait for the next start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from noisefs.daemon.arenas import Arenas
from noisefs.daemon.config import ArenaConfig, DaemonConfig, load_config
from noisefs.daemon.held import Held, hold, open_arena
from noisefs.daemon.reporting import Reporter
from noisefs.errors import InputError, NoiseFSError

log = logging.getLogger("noisefs.daemon")

BOUNDS = ("quota_bytes", "max_files", "spill_dir", "spill_quota_bytes")
# resume(new_config, roots_taken): the daemon runs with the new configuration from now on
Resume = Callable[[DaemonConfig, list[str]], None]


class Reloader:
    """Rereads ``config_path`` (plus the command line's ``overrides``) and applies it to
    ``arenas``: takes the new ones, stores changed bounds, releases the dropped ones, then
    calls ``resume``; counts each reload through ``reporter``."""

    def __init__(
        self,
        config_path: str | None,
        overrides: dict,
        arenas: Arenas,
        reporter: Reporter,
        resume: Resume,
    ) -> None:
        self._config_path = config_path
        self._overrides = overrides
        self._arenas = arenas
        self._reporter = reporter
        self._resume = resume

    def reload(self, current: DaemonConfig) -> None:
        """Apply the config as it is now, or keep ``current`` with an error line."""
        try:
            new = load_config(self._config_path, self._overrides)
            self._apply(current, new)
        except (InputError, NoiseFSError, OSError) as exc:
            self._reporter.count_reload(ok=False)
            log.error("reload refused, the running configuration stays: %s", exc)
        else:
            self._reporter.count_reload(ok=True)
            log.info("reloaded %s", self._config_path or "the command line")

    def _apply(self, current: DaemonConfig, new: DaemonConfig) -> None:
        """All or nothing: open what is new or changed first, then swap, then release."""
        old_by_root = dict(self._arenas)
        new_by_root = {str(a.root): a for a in new.arenas}
        opened: dict[str, Held] = {}
        reopened: dict[str, object] = {}
        try:
            for root, acfg in new_by_root.items():
                held = old_by_root.get(root)
                if held is None:
                    opened[root] = hold(acfg, current)
                else:
                    if acfg.results_dir != held.cfg.results_dir:  # usable before the swap
                        acfg.results_dir.mkdir(parents=True, exist_ok=True)
                    if any(getattr(acfg, b) != getattr(held.cfg, b) for b in BOUNDS):
                        reopened[root] = open_arena(acfg)
        except BaseException:
            for h in opened.values():
                h.close()  # its inbox (fds, checkpoint thread), the arena and the lock
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
        if new.metrics_port != current.metrics_port:
            log.warning("metrics_port changes take effect at the next start")
            new = dataclasses.replace(new, metrics_port=current.metrics_port)
        if new.state_dir != current.state_dir:
            log.warning("state_dir changes take effect at the next start")
            new = dataclasses.replace(new, state_dir=current.state_dir)
        for root in old_by_root:
            if root not in new_by_root:
                self._arenas.release(root)
        for root, arena in reopened.items():
            held = self._arenas[root]
            held.arena.close()
            held.arena = arena
            held.police.reset()  # the new handle reports the inbox's usage afresh
        for root, acfg in new_by_root.items():
            if root not in self._arenas:
                continue
            held = self._arenas[root]
            if acfg.results_dir != held.cfg.results_dir:
                # applied fully: the runs in progress keep their averages (the checkpoints
                # are keyed by the arena) and write their results to the new directory
                log.info(
                    "%s: results now go to %s (%d runs in progress carried over)",
                    root, acfg.results_dir, len(held.inbox.runs),
                )  # fmt: skip
            held.cfg = acfg
            held.inbox.reconfigure(acfg, new)
        for held in opened.values():
            self._arenas.add(held)
        self._resume(new, list(opened))
