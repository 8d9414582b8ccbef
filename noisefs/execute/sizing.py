"""Batch sizes chosen by cost: big enough that Aer's fixed cost per job is ≤ 0.5 % of a
job's time, within the memory budget and the arena quota.

Each job costs about ``a + b·B`` seconds for B trajectories. The first batches are small;
after each finished batch the sizer refits ``a`` and ``b`` (least squares over the jobs
seen, leaving out each worker's warm-up job once others exist) and grows the batch towards
``B ≥ a / (0.005·b)`` — by at most 8× a step, and never past ``max_seconds`` of work per job
(so Ctrl-C, progress and checkpoints stay responsive). ``--batch`` fixes the size instead.
"""

from __future__ import annotations

import math

FIXED_SHARE = 0.005  # a run pays Aer's fixed cost once per job; one Aer job pays it once
GROWTH = 8  # per step: a run reaches its size in few small jobs; max_seconds still bounds a job
FIRST_BATCH = 32


class FixedSizer:
    """Every batch has ``size`` trajectories (``--batch``)."""

    automatic = False

    def __init__(self, size: int) -> None:
        self.size = size

    def next_size(self) -> int:
        return self.size

    def observe(self, size: int, seconds: float) -> None:
        pass


class CostSizer:
    """Batch sizes grown from measured job costs, between 1 and ``cap``."""

    automatic = True

    def __init__(self, cap: int, first: int = FIRST_BATCH, max_seconds: float = 2.0) -> None:
        self.cap = max(1, cap)
        self.size = max(1, min(first, self.cap))
        self.max_seconds = max_seconds
        self._jobs: list[tuple[int, float]] = []

    def next_size(self) -> int:
        size = self.size
        if not self._jobs:  # the next one sees a second point on the line
            self.size = min(self.cap, 2 * self.size)
        return size

    def observe(self, size: int, seconds: float) -> None:
        """A job of ``size`` trajectories took ``seconds`` of simulation."""
        self._jobs.append((size, seconds))
        largest = max(s for s, _ in self._jobs)
        target = self._target(largest)
        if target is None:
            target = GROWTH * largest
        self.size = int(max(1, min(self.cap, GROWTH * largest, target)))

    def _target(self, largest: int) -> int | None:
        jobs = self._jobs[1:] if len(self._jobs) > 2 else self._jobs  # skip warm-up
        if len({s for s, _ in jobs}) < 2:
            return None
        n = len(jobs)
        mean_s = sum(s for s, _ in jobs) / n
        mean_t = sum(t for _, t in jobs) / n
        var = sum((s - mean_s) ** 2 for s, _ in jobs)
        per_trajectory = sum((s - mean_s) * (t - mean_t) for s, t in jobs) / var
        fixed = mean_t - per_trajectory * mean_s
        if per_trajectory <= 0:
            return None  # noise dominates: keep growing
        fixed = max(0.0, fixed)
        # a fit whose fixed cost is lost in the noise wants tiny jobs: never smaller than
        # the largest already run, unless that one ran past max_seconds
        wanted = max(largest, math.ceil(fixed / (FIXED_SHARE * per_trajectory)))
        by_time = int(self.max_seconds / per_trajectory)
        return max(1, min(wanted, max(by_time, 1)))
