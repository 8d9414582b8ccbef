"""What runs on Dask workers: the per-process arena plugin, leaf tasks and ``add`` tasks.

A leaf simulates its trajectories in sub-batches through the worker process's own arena
(on the worker's node, bounded there) and folds them into a fresh :class:`Aggregator`
whose sums it *returns*; an ``add`` task returns the sum of two partial sums. Both are
pure functions of their arguments: a task may run more than once (a lost worker, a stolen
task), so nothing is ever added into state that outlives the task.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from noisefs.aggregate import SumsShape, fold_batch, release_all
from noisefs.aggregate.snapshots import encode_snapshot, fold_snapshot
from noisefs.arena import Arena
from noisefs.execute.local import run_batch
from noisefs.options import DEFAULT_PUT_TIMEOUT_S
from noisefs.sim.aer import SimulationJob, simulate
from noisefs.sim.batches import Batch, batch_for

log = logging.getLogger("noisefs")

TIMING_KEYS = ("simulate_s", "store_s")  # carried beside the sums, summed up the tree

try:  # the plugin is a real WorkerPlugin where distributed is installed
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover - only without the dask extra
    _PluginBase = object


@dataclass(frozen=True)
class Leaf:
    """Trajectories [start, start + size) of a run seeded ``run_seed``, simulated as Aer
    jobs of ``sub`` trajectories aligned on multiples of ``sub`` (so the sums depend on
    nothing but the plan)."""

    start: int
    size: int
    run_seed: int
    sub: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    def batches(self) -> list[Batch]:
        """The leaf's Aer jobs, in order."""
        out, start = [], self.start
        while start < self.stop:
            stop = min(self.stop, (start // self.sub + 1) * self.sub)
            out.append(batch_for(len(out), start, stop - start, self.run_seed))
            start = stop
        return out


class ArenaPlugin(_PluginBase):
    """Opens this worker process's arena once, on the worker's own node.

    Every worker process on a node opens the same root, so the node's quota and inode
    bound hold for all of them together (the arena's ledger admits every ``put``); opening
    it sweeps what dead worker processes left behind (``Arena`` runs gc on open).
    :meth:`share_bytes` is this process's share of the node's bound.
    """

    idempotent = True  # a second run registering the same settings keeps the open arenas

    def __init__(self, root: str | None = None, timeout_s: float = DEFAULT_PUT_TIMEOUT_S) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self.arena = None

    def setup(self, worker=None) -> None:
        """Open the arena (in the worker process)."""
        self.arena = Arena(root=self.root, timeout_s=self.timeout_s)
        self.threads = max(1, int(getattr(worker, "state", worker).nthreads or 1)) if worker else 1
        # Dask's nanny starts workers with OMP_NUM_THREADS=1, which caps Aer's OpenMP
        # threads; Aer holds the GIL, so one Aer job at a time per process should have the
        # worker's threads. OpenMP reads it once, when Aer is first loaded: only before that.
        if os.environ.get("OMP_NUM_THREADS") == "1" and "qiskit_aer" not in sys.modules:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)

    def teardown(self, worker=None) -> None:
        """Close the arena; what is still in it is reclaimed by the next open's gc."""
        if self.arena is not None:
            self.arena.close()
            self.arena = None

    def share_bytes(self) -> int:
        """This process's share of the node's quota, per task thread: the quota split
        between the live processes using the arena (worker processes and any local client)."""
        processes = max(1, len(self.arena.live_owners()))
        return self.arena.quota_bytes // (processes * self.threads)


def _plugin(name: str) -> ArenaPlugin:
    from distributed import get_worker  # lazy: distributed, an optional extra

    worker = get_worker()
    plugin = worker.plugins.get(name)
    if plugin is None or plugin.arena is None:
        raise RuntimeError(
            f"dask worker {worker.address} has no noisefs arena plugin {name!r} "
            "(is it running the same noisefs version as the client?)"
        )
    return plugin


def job_value(job: SimulationJob) -> SimulationJob:
    """A task returning the job: leaves depend on it, so it travels once per worker."""
    return job


def run_leaf(job: SimulationJob, shape: SumsShape, leaf: Leaf, plugin_name: str) -> dict:
    """Simulate ``leaf`` through this worker's arena; return its sums (and timings).

    An Aer job's snapshots go into the arena all steps at once while they fit this
    process's share of the node's quota, else one step at a time (stored, folded and
    released before the next is stored): the same folds in the same order either way."""
    plugin = _plugin(plugin_name)
    arena = plugin.arena
    # Aer (0.18) holds the GIL: a worker's task threads take turns, so each job gets them all
    # (shot-parallel: the same states as one thread, but for one-shot jobs of >= 14 qubits,
    # where Aer's parallel state update may change the last bits)
    job = job.with_threads(plugin.threads)
    snapshot = min(leaf.sub, leaf.size) * _snapshot_bytes(job, shape)
    share = plugin.share_bytes()
    by_step = snapshot * shape.num_steps > share
    if snapshot > share:
        log.warning(
            "pid %d: one Aer job's snapshot (%d bytes) exceeds this worker's share of the "
            "node's arena quota (%d bytes); it will spill or wait for room",
            os.getpid(),
            snapshot,
            share,
        )
    aggregator = shape.empty()
    timing = [0.0, 0.0]
    for batch in leaf.batches():
        if by_step:
            _fold_step_by_step(arena, job, batch, aggregator, timing)
        else:
            _fold_whole(arena, job, batch, aggregator, timing)
    state = pack(aggregator.state())
    state["simulate_s"] = np.float64(timing[0])
    state["store_s"] = np.float64(timing[1])
    return state


def _fold_whole(arena, job: SimulationJob, batch: Batch, aggregator, timing: list) -> None:
    done = run_batch(arena, job, batch)
    try:
        fold_batch(arena, done.keys, aggregator, job.store)
    except BaseException:
        release_all(arena, done.keys)
        raise
    timing[0] += done.simulate_s
    timing[1] += done.store_s


def _fold_step_by_step(arena, job: SimulationJob, batch: Batch, aggregator, timing: list) -> None:
    started = time.perf_counter()
    per_step = simulate(job, batch)
    timing[0] += time.perf_counter() - started
    for step, states in enumerate(per_step):
        started = time.perf_counter()
        key = arena.put(
            encode_snapshot(states, job.store), run=job.run_name, step=step, batch=batch.index
        )
        timing[1] += time.perf_counter() - started
        try:
            view = arena.get(key)
            fold_snapshot(aggregator, step, view, job.store)
            del view  # drop the mapping before the snapshot's pages are recycled
        finally:
            release_all(arena, [key])
        per_step[step] = None  # Aer's copy of this step is no longer needed


def _snapshot_bytes(job: SimulationJob, shape: SumsShape) -> int:
    dim = 2**shape.num_qubits
    return 16 * dim * (dim if job.store == "dense" else 1)


def add_sums(left: dict, right: dict) -> dict:
    """The sum of two partial sums, as a new dict (the inputs are never changed: they may
    be another task's inputs too)."""
    if left.keys() != right.keys():
        raise ValueError(f"partial sums of different runs: {sorted(left)} vs {sorted(right)}")
    return {name: np.add(left[name], right[name]) for name in left}


def pack(state: dict) -> dict:
    """An :meth:`Aggregator.state` with each ρ sum as its upper triangle (all a ZHERK sum
    holds: the strict lower triangle is zero), column by column (contiguous in the sums'
    Fortran order): half the bytes to move and add."""
    packed = {}
    for name, value in state.items():
        if name.startswith("rho_sum_"):
            columns = [value[: j + 1, j] for j in range(value.shape[0])]
            packed["rho_upper_" + name[len("rho_sum_") :]] = np.concatenate(
                columns or [value[:0, 0]]
            )
        else:
            packed[name] = value
    return packed


def unpack(state: dict) -> tuple[dict, float, float]:
    """The :meth:`Aggregator.state` of a packed state, and its simulate and store seconds."""
    sums = {}
    for name, value in state.items():
        if name.startswith("rho_upper_"):
            dim = int(round((np.sqrt(8 * value.size + 1) - 1) / 2))
            full = np.zeros((dim, dim), dtype=value.dtype, order="F")
            offset = 0
            for j in range(dim):
                full[: j + 1, j] = value[offset : offset + j + 1]
                offset += j + 1
            sums["rho_sum_" + name[len("rho_upper_") :]] = full
        elif name not in TIMING_KEYS:
            sums[name] = value
    return sums, float(state.get("simulate_s", 0.0)), float(state.get("store_s", 0.0))
