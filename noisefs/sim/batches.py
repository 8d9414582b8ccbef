"""Batches of trajectories and the seed contract.

A batch covers trajectories [start, start + size) and runs as one Aer job with
``seed_simulator = S + start``; Aer seeds shot j of a job with ``seed_simulator + j``, so
trajectory i always uses seed S + i, whatever the batch sizes, worker count or resume
(docs/contract.md "Reproducibility: the oracle"). Batch sizes may therefore change during a run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    """One Aer job: trajectories [start, start + size) with ``seed = run seed + start``."""

    index: int  # submission order within this process (tags the batch's snapshots)
    start: int
    size: int
    seed: int

    @property
    def stop(self) -> int:
        return self.start + self.size


def batch_for(index: int, start: int, size: int, run_seed: int) -> Batch:
    """The batch of trajectories [start, start + size) of a run seeded ``run_seed``."""
    if size < 1 or start < 0:
        raise ValueError(f"empty or negative batch: start {start}, size {size}")
    return Batch(index=index, start=start, size=size, seed=run_seed + start)
