"""``noisefs daemon``: the long-running process that polices arenas and ingests snapshots
that other programs write into ``<arena>/inbox/<run>/<step>/``.

One job per module: ``config`` (TOML + command line, validated), ``watch`` (watchdog
events as hints, liveness, scan-only fallback), ``npyfile`` (safe probing and reading of
foreign ``.npy`` files), ``checks`` (what a folded file must hold), ``dirs`` (an inbox's
directory descriptors), ``candidates`` (files heard of, queued or waiting), ``scan``
(discovery and inbox usage), ``ingest`` (the Inbox: claim, fold, reject, finish runs),
``durable`` (checkpoints, recovery, results), ``runs`` (a run's running averages and its
files), ``police`` (gc and watermark moves to spill), ``metrics`` (Prometheus), ``notify``
(systemd), ``logs`` (stderr/journald), ``statusfile`` (lock and status file), ``held``
(one arena held: handle, lock, inbox), ``arenas`` (the arenas held, by root),
``reporting`` (status file and metrics), ``reload`` (SIGHUP, all or nothing), ``timers``
(the periodic work as a table) and ``process`` (lifecycle, signals, the main loop).
See docs/daemon.md.
"""

from __future__ import annotations

from noisefs.daemon.config import DaemonConfig, load_config
from noisefs.daemon.process import run_daemon

__all__ = ["DaemonConfig", "load_config", "run_daemon"]
