"""Simulation in a background thread of this process.

qiskit-aer (0.18) holds the GIL while it simulates, so folding in the loop's thread does not
overlap a running Aer job (measured: another thread runs at ~2 % of its speed meanwhile);
the thread keeps the next batch queued behind the current one. Folding overlaps simulation
with worker processes (``--workers``), which hand their snapshots over through the arena."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from noisefs import faults
from noisefs.aggregate import release_all
from noisefs.aggregate.snapshots import encode_snapshot
from noisefs.execute.protocol import BatchDone
from noisefs.sim.aer import SimulationJob, simulate
from noisefs.sim.batches import Batch


def run_batch(arena, job: SimulationJob, batch: Batch) -> BatchDone:
    """Simulate ``batch`` and put its snapshots into ``arena``; all or nothing."""
    started = time.perf_counter()
    per_step = simulate(job, batch)
    simulated = time.perf_counter()
    keys: list[str] = []
    try:
        for step, states in enumerate(per_step):
            snapshot = encode_snapshot(states, job.store)
            keys.append(arena.put(snapshot, run=job.run_name, step=step, batch=batch.index))
    except BaseException:
        release_all(arena, keys)
        raise
    faults.hold_at("batch.published")
    return BatchDone(
        batch,
        keys=tuple(keys),
        simulate_s=simulated - started,
        store_s=time.perf_counter() - simulated,
    )


class LocalExecutor:
    """``threads`` simulation threads sharing this process's arena handle."""

    needs_adopt = False
    completed = 0

    def __init__(self, arena, job: SimulationJob, threads: int = 1) -> None:
        self._arena = arena
        self._job = job
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="noisefs-sim")
        self.slots = threads + 1

    def preferred_sizer(self) -> None:
        return None

    def meta(self) -> dict:
        return {"kind": "local", "workers": 1, "aer_threads": self._job.aer_threads or None}

    def submit(self, batch: Batch) -> Future[BatchDone]:
        return self._pool.submit(run_batch, self._arena, self._job, batch)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
