"""The inbox files an inbox has heard of and not yet taken.

A candidate is a :data:`Key` ``(run, step, name, claimed)``: a file ``name`` in
``inbox/<run>/<step>/``, or with ``claimed`` a file already renamed into
``daemon/claimed/`` under ``name``. It is *queued* (to be taken now, oldest first) or
*waiting* (not ready: retried soon, then less often the longer it stays unready).
"""

from __future__ import annotations

import time
from typing import NamedTuple

Key = tuple[str, int, str, bool]  # run, step, name, claimed
RETRY_EVERY_S = 0.05  # how often waiting files are looked at


class Waiting(NamedTuple):
    """Why a candidate waits and since when (its size and mtime restart the clock)."""

    size: int | None
    mtime_ns: int | None
    since: float  # monotonic time it was last seen to change
    reason: str  # the probe's reason, or "error"
    tried: float  # monotonic time of the last try


class Candidates:
    """Queued and waiting candidates of one inbox; touches no file."""

    def __init__(self) -> None:
        self.queued: dict[Key, float] = {}  # candidate -> when first hinted
        self.waiting: dict[Key, Waiting] = {}
        self._last_retry = time.monotonic()

    def queue(self, key: Key) -> None:
        """Queue ``key`` (a candidate already queued keeps its place)."""
        self.queued.setdefault(key, time.monotonic())

    def known(self, key: Key) -> bool:
        """Whether ``key`` is queued or waiting."""
        return key in self.queued or key in self.waiting

    def busy(self, run: str) -> bool:
        """Whether any file of ``run`` is queued or waiting."""
        return any(k[0] == run for k in self.queued) or any(k[0] == run for k in self.waiting)

    def pop(self) -> Key:
        """The oldest queued candidate, dequeued."""
        key = next(iter(self.queued))
        del self.queued[key]
        return key

    def requeue_due(self) -> None:
        """Queue the waiting candidates whose retry is due: retried soon, then less often
        the longer a writer keeps them unready (every 2 s at most)."""
        now = time.monotonic()
        if not self.waiting or now - self._last_retry < RETRY_EVERY_S:
            return
        self._last_retry = now
        for key, entry in list(self.waiting.items()):
            if now - entry.tried >= min(2.0, 0.05 + (now - entry.since) / 10):
                self.queued.setdefault(key, now)
