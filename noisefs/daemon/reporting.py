"""What the daemon reports: ``status.json`` for ``noisefs status`` and the Prometheus
metrics, both from the numbers it holds (never by walking an arena at scrape time).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from noisefs.daemon.held import Held
from noisefs.daemon.metrics import Metrics
from noisefs.daemon.statusfile import write_status
from noisefs.daemon.watch import Watcher

log = logging.getLogger("noisefs.daemon")


class Reporter:
    """Status files and metrics of the arenas it is shown.

    It reads the watcher's mode and restarts, each arena's inbox, police figures and
    counters, and owns the daemon-wide figures (start time, reloads). ``metrics`` is None
    without ``--metrics-port``.
    """

    def __init__(self, watcher: Watcher, metrics: Metrics | None, config_path: str | None) -> None:
        self._watcher = watcher
        self._metrics = metrics
        self._config_path = config_path
        self.started = time.time()
        self.daemon_figures: dict = {"reloads_ok": 0, "reloads_error": 0, "started": self.started}

    def count_reload(self, ok: bool) -> None:
        """Count a SIGHUP reload, applied (``ok``) or refused."""
        self.daemon_figures["reloads_ok" if ok else "reloads_error"] += 1

    def publish(self, held: Mapping[str, Held]) -> None:
        """Hand the metrics server a copy of the figures (no-op without metrics)."""
        if self._metrics is None:
            return
        self.daemon_figures["scan_only"] = int(self._watcher.scan_only)
        self.daemon_figures["observer_restarts"] = self._watcher.restarts
        self._metrics.update(
            {
                "arenas": {
                    k: {
                        "figures": dict(h.police.figures),
                        "counters": {**h.counters, "rejected": dict(h.counters["rejected"])},
                    }
                    for k, h in held.items()
                },
                "global": dict(self.daemon_figures),
            }
        )

    def write_status(self, held: Held, state: str = "running") -> None:
        """Rewrite ``<arena>/daemon/status.json`` (an error line when it cannot)."""
        runs = dict(held.inbox.finished)
        runs |= {
            name: {
                "ingested": r.ingested,
                "num_qubits": r.num_qubits,
                "steps": {str(s): n for s, n in r.counts().items()},
                "rejected": r.rejected,
            }
            for name, r in held.inbox.runs.items()
        }
        status = {
            "pid": os.getpid(),
            "state": state,
            "started": self.started,
            "updated": time.time(),
            "mode": self._watcher.mode,
            "config": self._config_path,
            "metrics_port": self._metrics.port if self._metrics else None,
            "runs": runs,
            "counters": held.counters,
            "figures": held.police.figures,
            "pressure": held.police.pressure,
            "waiting_files": len(held.inbox.waiting),
            "scan_pending": held.inbox.scan_pending,
            "results_dir": str(held.cfg.results_dir),
            "reloads": {
                "ok": self.daemon_figures["reloads_ok"],
                "error": self.daemon_figures["reloads_error"],
            },
        }
        try:
            write_status(held.inbox.daemon_fd, status)
        except OSError as exc:
            log.error("%s: cannot write the status file: %s", held.cfg.root, exc)
