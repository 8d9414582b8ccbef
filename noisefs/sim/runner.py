"""Trajectory runner: Aer statevector batches whose snapshots go into the arena.

Batch b covers trajectories [b·B, b·B + size) and runs with ``seed_simulator = S + b·B``;
Aer seeds shot j of a job with ``seed_simulator + j``, so trajectory i always uses seed
S + i, whatever the batch size, worker count or resume (SPEC.md's oracle).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from noisefs.errors import NoiseFSError


@dataclass(frozen=True)
class Batch:
    index: int
    start: int
    size: int
    seed: int


@dataclass(frozen=True)
class BatchPlan:
    """``trajectories`` split into batches of ``batch_size`` with the seed contract; batches
    are made on demand (a plan of a million batches holds no million objects)."""

    trajectories: int
    batch_size: int
    seed: int

    def __len__(self) -> int:
        return -(-self.trajectories // self.batch_size)

    def __getitem__(self, index: int) -> Batch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.batch_size
        size = min(self.batch_size, self.trajectories - start)
        return Batch(index=index, start=start, size=size, seed=self.seed + start)


def plan_batches(trajectories: int, batch_size: int, seed: int) -> BatchPlan:
    """Split ``trajectories`` into batches of ``batch_size`` with the seed contract."""
    return BatchPlan(trajectories, batch_size, seed)


@dataclass(frozen=True)
class SimulationJob:
    """Everything a worker needs to simulate any batch; picklable."""

    circuit: object  # QuantumCircuit with pershot save_statevector at each snapshot step
    labels: tuple[str, ...]
    noise_model: object  # qiskit_aer.noise.NoiseModel
    store: str  # "factored" or "dense"
    run_name: str
    aer_threads: int = 0  # 0: let Aer use every core


@dataclass(frozen=True)
class BatchDone:
    """A simulated batch whose snapshots (one key per step) sit in the arena."""

    index: int
    size: int
    keys: tuple[str, ...]
    simulate_s: float
    store_s: float


class SimulationError(NoiseFSError):
    """Aer failed to simulate a batch."""


def simulate(job: SimulationJob, batch: Batch) -> list[np.ndarray]:
    """Run one batch in Aer; return one (size × 2ⁿ) stack of pure states per snapshot step."""
    from qiskit_aer import AerError, AerSimulator

    simulator = AerSimulator(
        method="statevector",
        noise_model=job.noise_model,
        max_parallel_threads=job.aer_threads,
    )
    try:
        result = simulator.run(job.circuit, shots=batch.size, seed_simulator=batch.seed).result()
    except AerError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise SimulationError(f"Aer could not simulate batch {batch.index}: {message}") from None
    if not result.success:
        raise SimulationError(f"Aer failed on batch {batch.index}: {result.status}")
    data = result.data(0)
    stacks = []
    for label in job.labels:
        states = np.stack([np.asarray(state) for state in data[label]])
        if states.shape[0] == 1 and batch.size > 1:
            # Aer runs a deterministic circuit (no noise, no measurement) once
            states = np.repeat(states, batch.size, axis=0)
        elif states.shape[0] != batch.size:
            raise SimulationError(f"Aer returned {states.shape[0]} states for {batch.size} shots")
        stacks.append(states)
    return stacks


def to_snapshot(states: np.ndarray, store: str) -> np.ndarray:
    """The array stored for one step: Ψ itself (factored) or every ψψ† (dense)."""
    if store == "dense":
        return states[:, :, None] * states.conj()[:, None, :]
    return states


def run_batch(arena, job: SimulationJob, batch: Batch) -> BatchDone:
    """Simulate ``batch`` and put its snapshots into ``arena``; all or nothing."""
    started = time.perf_counter()
    per_step = simulate(job, batch)
    simulated = time.perf_counter()
    keys: list[str] = []
    try:
        for step, states in enumerate(per_step):
            keys.append(
                arena.put(
                    to_snapshot(states, job.store), run=job.run_name, step=step, batch=batch.index
                )
            )
    except BaseException:
        for key in keys:
            arena.release(key)
        raise
    return BatchDone(
        batch.index, batch.size, tuple(keys), simulated - started, time.perf_counter() - simulated
    )


class LocalExecutor:
    """Simulates in a background thread of this process (Aer releases the GIL), so the
    caller folds one batch while Aer computes the next."""

    needs_adopt = False

    def __init__(self, arena, job: SimulationJob, threads: int = 1) -> None:
        self._arena = arena
        self._job = job
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="noisefs-sim")
        self.slots = threads + 1

    def submit(self, batch: Batch) -> Future:
        return self._pool.submit(run_batch, self._arena, self._job, batch)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- worker processes ------------------------------------------------------------------

_worker_state: dict = {}


def _worker_init(
    parent: int, arena_root: str, spill_dir: str | None, timeout_s: float, job: SimulationJob
) -> None:
    # The parent handles Ctrl-C and checkpoints; workers just stop when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    from noisefs.arena import Arena

    _worker_state["arena"] = Arena(
        root=arena_root, quota=None, max_files=None, spill_dir=spill_dir, timeout_s=timeout_s
    )
    _worker_state["job"] = job


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Exit as soon as the parent (pid ``parent``, passed in: it may already be gone when
    this worker finished starting) is gone: an orphaned worker would sit on its arena data
    as a live owner forever. Exiting releases its lock, so gc reclaims it."""
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="noisefs-parent-watch", daemon=True).start()


def _worker_run(batch: Batch) -> BatchDone:
    return run_batch(_worker_state["arena"], _worker_state["job"], batch)


class ProcessExecutor:
    """``workers`` local processes, each with its own Arena handle on the same root. The
    parent adopts each finished batch's snapshots so they outlive the worker."""

    needs_adopt = True

    def __init__(self, arena, job: SimulationJob, workers: int) -> None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        job = SimulationJob(**{**job.__dict__, "aer_threads": threads})
        spill = str(arena.spill_dir) if getattr(arena, "spill_dir", None) else None
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(), str(Path(arena.root)), spill, arena.timeout_s, job),
        )
        self.slots = 2 * workers

    def submit(self, batch: Batch) -> Future:
        return self._pool.submit(_worker_run, batch)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
