"""The daemon's periodic work as a table: each :class:`Periodic` runs its action when its
interval has passed since it last ran (or at once, when the tick is forced)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Periodic:
    """``action(now, forced)`` every ``interval()`` seconds: read at each tick, so a
    reloaded configuration applies at once; 0 runs it at every tick, None never."""

    name: str
    interval: Callable[[], float | None]
    action: Callable[[float, bool], None]
    last: float = 0.0  # monotonic time it last ran

    def run_if_due(self, now: float, forced: bool = False) -> bool:
        """Run the action when due (always when ``forced``, unless switched off); whether
        it ran."""
        interval = self.interval()
        if interval is None or not (forced or now - self.last >= interval):
            return False
        self.last = now
        self.action(now, forced)
        return True


def run_due(timers: list[Periodic], now: float, forced: bool = False) -> None:
    """One tick: run the due timers in table order."""
    for timer in timers:
        timer.run_if_due(now, forced)
