"""Named fault points: the places where a test makes noisefs fail on purpose.

Nothing happens at a point unless a test switched it on, either in this process with
:func:`armed`, or for the processes it starts (a CLI run, its worker processes) with the
one variable ``NOISEFS_FAULTS``: comma-separated ``point`` or ``point@n`` (the point fires
the n-th time a process reaches it, default the first; once per process). The variable is
read when a point is reached, never at import.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator

ENV = "NOISEFS_FAULTS"

POINTS = {
    "worker.batch-done": "a worker process finished a batch and has not yet published it",
    "worker.snapshots-lost": "a worker's published batch loses its snapshots before the "
    "parent folds it (the parent must recompute it)",
    "arena.publish-interrupted": "a put interrupted (KeyboardInterrupt) after its file is "
    "written, before it is published",
    "run.last-window": "a run after its last batch: 1st, before its parts close; 2nd, before "
    "the result file is written (SIGTERM arrives there)",
}

_armed: dict[str, int] = {}
_reached: Counter[str] = Counter()
_parsed: tuple[str, dict[str, int]] = ("", {})


def _from_environment() -> dict[str, int]:
    global _parsed
    text = os.environ.get(ENV, "")
    if text != _parsed[0]:
        spec: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            point, _, at = item.partition("@")
            spec[point] = int(at or 1)
        _parsed = (text, spec)
    return _parsed[1]


def fires(point: str) -> bool:
    """Whether the switched-on ``point`` fires now (its n-th time in this process)."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    at = _armed.get(point) or _from_environment().get(point)
    if at is None:
        return False
    _reached[point] += 1
    return _reached[point] == at


def kill_at(point: str) -> None:
    """SIGKILL this process when ``point`` fires (as the OOM killer would)."""
    if fires(point):
        os.kill(os.getpid(), signal.SIGKILL)


def signal_at(point: str, signum: int = signal.SIGTERM) -> None:
    """Send this process ``signum`` when ``point`` fires (as a user's Ctrl-C or kill would)."""
    if fires(point):
        os.kill(os.getpid(), signum)


def environment(*points: str) -> dict[str, str]:
    """``os.environ`` plus ``NOISEFS_FAULTS`` switching ``points`` on, for a child process."""
    for point in points:
        if point.partition("@")[0] not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
    return {**os.environ, ENV: ",".join(points)}


@contextlib.contextmanager
def armed(point: str, at: int = 1) -> Iterator[None]:
    """Switch ``point`` on in this process for the ``with`` block."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    _armed[point] = at
    _reached[point] = 0
    try:
        yield
    finally:
        _armed.pop(point, None)
        _reached.pop(point, None)
