"""A progress bar on a terminal (trajectories/s, ETA, arena and spill use); silence elsewhere."""

from __future__ import annotations

import os
import sys

from noisefs.units import format_bytes


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class Progress:
    """Thin wrapper over tqdm that is a no-op when not on a terminal or when quiet."""

    def __init__(self, total: int, initial: int = 0, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = None
        if enabled:
            from tqdm import tqdm

            # a terminal that reports no width (e.g. under `script`) would get an empty bar
            sized = _columns() > 0
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="traj",
                dynamic_ncols=sized,
                ncols=None if sized else 100,
                nrows=None if sized else 24,
                file=sys.stderr,
                leave=False,
            )

    def advance(self, trajectories: int, stats: dict | None = None) -> None:
        if self._bar is None:
            return
        if stats:
            self._bar.set_postfix_str(
                f"arena {format_bytes(stats.get('bytes_used', 0))}/{format_bytes(stats.get('quota_bytes', 0))}"
                f" spill {format_bytes(stats.get('spilled_bytes', 0))}",
                refresh=False,
            )
        self._bar.update(trajectories)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
