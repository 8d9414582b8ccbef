"""Prometheus metrics on 127.0.0.1 (``--metrics-port``; the ``metrics`` extra).

The collector reads a snapshot of numbers the daemon already holds (refreshed by its main
loop at each police tick); a scrape never walks an arena nor touches its ledger.
``prometheus_client`` is imported only when metrics are asked for.
"""

from __future__ import annotations

import threading

from noisefs.errors import InputError

GAUGES = {  # figure -> (metric name, help)
    "bytes_used": ("noisefs_arena_used_bytes", "Bytes charged to the arena (own + inbox files)"),
    "quota_bytes": ("noisefs_arena_quota_bytes", "The arena's byte bound"),
    "files_used": ("noisefs_arena_inodes", "Inodes charged to the arena"),
    "max_files": ("noisefs_arena_max_inodes", "The arena's inode bound"),
    "spilled_bytes": ("noisefs_arena_spilled_bytes", "Bytes of snapshots in the spill tier"),
    "spilled_files": ("noisefs_arena_spilled_files", "Snapshots in the spill tier"),
    "foreign_bytes": ("noisefs_arena_inbox_bytes", "Bytes of inbox and claimed files"),
    "foreign_files": ("noisefs_arena_inbox_files", "Inodes of inbox and claimed files"),
    "tmpfs_free_bytes": ("noisefs_tmpfs_free_bytes", "Free bytes on the arena's filesystem"),
    "tmpfs_free_inodes": ("noisefs_tmpfs_free_inodes", "Free inodes on the arena's filesystem"),
}
COUNTERS = {  # counter -> (metric name without _total, help)
    "ingested_files": ("noisefs_daemon_ingested_files", "Inbox files folded"),
    "ingested_bytes": ("noisefs_daemon_ingested_bytes", "Bytes of inbox files folded"),
    "reclaimed_bytes": ("noisefs_daemon_reclaimed_bytes", "Bytes gc reclaimed from dead owners"),
    "reclaimed_files": ("noisefs_daemon_reclaimed_files", "Inodes gc reclaimed"),
    "moved_bytes": ("noisefs_daemon_spilled_bytes", "Bytes moved to spill by the watermarks"),
    "moved_files": ("noisefs_daemon_spilled_files", "Snapshots moved to spill by the watermarks"),
    "missed_events": (
        "noisefs_daemon_missed_events",
        "Inbox files a rescan found without an event",
    ),
    "results_written": ("noisefs_daemon_results", "Result files written at DONE"),
}


class Metrics:
    """Holds the latest snapshot and serves it over HTTP."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: dict = {"arenas": {}, "global": {}}
        self.port: int | None = None
        self._server = None

    def update(self, snapshot: dict) -> None:
        """Replace the snapshot (a dict built by the daemon; copied by the caller)."""
        with self._lock:
            self._snapshot = snapshot

    def collect(self):
        """prometheus_client collector protocol."""
        # lazy: prometheus_client, an optional extra, only with --metrics-port
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            snap = self._snapshot
        arenas = snap["arenas"]
        for key, (name, doc) in GAUGES.items():
            fam = GaugeMetricFamily(name, doc, labels=["arena"])
            for root, a in arenas.items():
                if key in a.get("figures", {}):
                    fam.add_metric([root], a["figures"][key])
            yield fam
        for key, (name, doc) in COUNTERS.items():
            fam = CounterMetricFamily(name, doc, labels=["arena"])
            for root, a in arenas.items():
                fam.add_metric([root], a["counters"].get(key, 0))
            yield fam
        rej = CounterMetricFamily(
            "noisefs_daemon_rejected_files", "Inbox files rejected", labels=["arena", "reason"]
        )
        for root, a in arenas.items():
            for reason, n in sorted(a["counters"].get("rejected", {}).items()):
                rej.add_metric([root, reason], n)
        yield rej
        g = snap["global"]
        reloads = CounterMetricFamily("noisefs_daemon_reloads", "SIGHUP reloads", labels=["result"])
        reloads.add_metric(["ok"], g.get("reloads_ok", 0))
        reloads.add_metric(["error"], g.get("reloads_error", 0))
        yield reloads
        yield GaugeMetricFamily(
            "noisefs_daemon_scan_only",
            "1 while inotify is unavailable",
            value=g.get("scan_only", 0),
        )
        yield CounterMetricFamily(
            "noisefs_daemon_observer_restarts", "Dead inotify observers restarted",
            value=g.get("observer_restarts", 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "noisefs_daemon_start_time_seconds", "Unix time the daemon started",
            value=g.get("started", 0),
        )  # fmt: skip

    def start(self, port: int) -> int:
        """Serve on 127.0.0.1:``port`` (0: any free port); return the port."""
        try:  # lazy: prometheus_client, an optional extra, only with --metrics-port
            from prometheus_client import start_http_server
            from prometheus_client.registry import CollectorRegistry
        except ImportError:
            raise InputError(
                "--metrics-port needs prometheus-client: pip install 'noisefs[metrics]'"
            ) from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        except OSError as exc:  # a port already taken: say which, in one line
            raise InputError(
                f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} "
                f"({exc.strerror or exc}); choose a free port, or 0 for any"
            ) from None
        self._server = server
        self.port = int(server.server_address[1])
        return self.port

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
