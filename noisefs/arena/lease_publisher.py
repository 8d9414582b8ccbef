"""The lease's background publisher: one thread per ``Arena`` handle that publishes the
lease's pending snapshots once the oldest is ``PUBLISH_DELAY_S`` old, keeps the owner row's
figures at most ``FIGURES_S`` stale, and looks at pressure every tick (see
:mod:`noisefs.arena.lease` for what is published and why).

It owns only its thread and its clock; everything it does goes through the lease's public
methods (``flush``, ``check_pressure``, ``oldest_pending``, ``figures_dirty``) under the
lease's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noisefs.arena.lease import Lease

log = logging.getLogger("noisefs.arena")

PUBLISH_DELAY_S = 0.02  # pending snapshots older than this are published by the thread
TICK_S = 0.01  # the thread's period
FIGURES_S = 0.1  # the owner row's used/free figures (other processes' stats) lag at most this


class LeasePublisher:
    """The thread that publishes ``lease`` in the background (started on first use)."""

    def __init__(self, lease: Lease, where: str) -> None:
        self.lease = lease
        self.where = where  # the arena's root, for the log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread unless it runs already (called under the lease's lock or not)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="noisefs-lease", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (up to 5 s; not when called from it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        lease = self.lease
        synced = time.monotonic()
        while not self._stop.wait(TICK_S):
            try:
                with lease.lock:
                    oldest = lease.oldest_pending()
                    now = time.monotonic()
                    if (oldest is not None and time.time() - oldest >= PUBLISH_DELAY_S) or (
                        now - synced >= FIGURES_S and lease.figures_dirty()
                    ):
                        lease.flush()  # also keeps the owner row's figures (stats) current
                        synced = now
                    lease.check_pressure(force=True)
            except Exception:  # noqa: BLE001 - retried next tick; close publishes for good
                log.debug("lease thread of arena %s", self.where, exc_info=True)
