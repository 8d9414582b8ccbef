"""What the daemon reports: ``status.json`` for ``noisefs status`` and the Prometheus
metrics, both from the numbers it holds (never by walking an arena at scrape time).

Mixed into :class:`~noisefs.daemon.process.Daemon`.
"""

from __future__ import annotations

import logging
import os
import time

from noisefs.daemon.held import Held
from noisefs.daemon.statusfile import write_status

log = logging.getLogger("noisefs.daemon")


class Reporting:
    """Status file and metrics; expects the attributes :class:`Daemon` sets up."""

    def _publish(self) -> None:
        if self.metrics is None:
            return
        self.g["scan_only"] = int(self.watcher.scan_only)
        self.g["observer_restarts"] = self.watcher.restarts
        self.metrics.update(
            {
                "arenas": {
                    k: {
                        "figures": dict(h.police.figures),
                        "counters": {**h.counters, "rejected": dict(h.counters["rejected"])},
                    }
                    for k, h in self.held.items()
                },
                "global": dict(self.g),
            }
        )

    def _write_status(self, held: Held, state: str = "running") -> None:
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
            "mode": self.watcher.mode,
            "config": self.config_path,
            "metrics_port": self.metrics.port if self.metrics else None,
            "runs": runs,
            "counters": held.counters,
            "figures": held.police.figures,
            "pressure": held.police.pressure,
            "waiting_files": len(held.inbox.waiting),
            "results_dir": str(held.cfg.results_dir),
            "reloads": {"ok": self.g["reloads_ok"], "error": self.g["reloads_error"]},
        }
        try:
            write_status(held.inbox.daemon_fd, status)
        except OSError as exc:
            log.error("%s: cannot write the status file: %s", held.cfg.root, exc)
