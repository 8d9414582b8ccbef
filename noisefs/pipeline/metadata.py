"""What a result records about its run: versions, arena figures, and the ``meta`` dict."""

from __future__ import annotations

import time

from noisefs import __version__


def library_versions() -> dict[str, str]:
    # lazy: qiskit and Aer are loaded by the run already; not by importing this module
    import qiskit
    import qiskit_aer

    return {
        "noisefs": __version__,
        "qiskit": qiskit.__version__,
        "qiskit-aer": qiskit_aer.__version__,
    }


class ArenaSampler:
    """This run's arena figures: peaks (exact when the arena's own peak moved during the
    run, else the largest sample) and what the run spilled (cumulative counters).

    ``stats()`` publishes the handle's leased snapshots and measures the root, so it is
    taken at most every ``MIN_INTERVAL_S`` (per batch it would put a ledger commit back
    into the commit-free cycle); ``force`` takes one now (the run's last)."""

    MIN_INTERVAL_S = 0.5

    def __init__(self, start: dict) -> None:
        self.start = start
        self.figures = {"peak_bytes": 0, "peak_files": 0, "spilled_bytes": 0, "spilled_files": 0}
        self._last: dict = start
        self._taken = float("-inf")

    def sample(self, arena, force: bool = False) -> dict:
        now = time.monotonic()
        if not force and now - self._taken < self.MIN_INTERVAL_S:
            return self._last
        self._taken = now
        stats = self._last = arena.stats()
        start, figures = self.start, self.figures
        for name, used in (("peak_bytes", "bytes_used"), ("peak_files", "files_used")):
            figures[name] = max(figures[name], int(stats[used]))
            if stats[name] > start[name]:
                figures[name] = max(figures[name], int(stats[name]))
        figures["spilled_bytes"] = int(stats["spilled_total_bytes"] - start["spilled_total_bytes"])
        figures["spilled_files"] = int(stats["spilled_total_files"] - start["spilled_total_files"])
        return stats

    def meta(self, fallback_root: str = "") -> dict:
        start = self.start
        return {
            "root": str(start.get("root", fallback_root)),
            "quota_bytes": int(start.get("quota_bytes", 0)),
            "max_files": int(start.get("max_files", 0)),
            **self.figures,
        }
