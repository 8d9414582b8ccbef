"""What the run loop needs of an executor, and what a finished batch carries.

An executor simulates batches somewhere — a thread of this process, local worker
processes, a Dask cluster — and hands back a :class:`BatchDone` per batch. A batch
simulated on this machine leaves its snapshots in the arena and carries their keys; a
batch simulated where this machine's arena cannot be reached carries the partial sums it
folded there. The loop folds either kind the same way (:func:`noisefs.pipeline.loop`).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from noisefs.sim.batches import Batch


@dataclass(frozen=True)
class BatchDone:
    """A simulated batch: its snapshots' arena keys (one per step), or its partial sums."""

    batch: Batch
    keys: tuple[str, ...] = ()
    sums: dict[str, np.ndarray] | None = None  # an Aggregator.state() of this batch alone
    simulate_s: float = 0.0
    store_s: float = 0.0

    def __post_init__(self) -> None:
        if (self.sums is None) == (not self.keys):
            raise ValueError("a finished batch carries either arena keys or partial sums")

    @property
    def size(self) -> int:
        return self.batch.size


class Sizer(Protocol):
    """Gives batch sizes and learns from finished batches (see :mod:`noisefs.execute.sizing`)."""

    def next_size(self) -> int: ...

    def observe(self, size: int, seconds: float) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Runs batches; the loop keeps at most ``slots`` of them submitted at once."""

    slots: int
    # True when snapshots were written by other processes' arena handles, so this process
    # must adopt them (become their owner) before they outlive the writer
    needs_adopt: bool
    # trajectories simulated in parts that finished before their whole batch did (progress
    # shows them sooner than folds); 0 where a batch is one part
    completed: int

    def preferred_sizer(self) -> Sizer | None:
        """The batch sizes this executor needs (Dask: one group of leaves), or None to let
        the run choose."""
        ...

    def meta(self) -> dict:
        """Where the batches ran, as the result's ``meta["execution"]`` records it."""
        ...

    def submit(self, batch: Batch) -> Future[BatchDone]:
        """Start simulating ``batch``; the future's result is its :class:`BatchDone`."""
        ...

    def shutdown(self) -> None:
        """Cancel what has not started, wait for what has; idempotent."""
        ...
