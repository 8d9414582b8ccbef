"""``workers`` local processes, each with its own Arena handle on the same root.

The parent adopts each finished batch's snapshots so they outlive the worker; a worker
publishes a batch's rows before it returns the keys, so a batch the parent cannot adopt was
lost (its worker died, its rows were reclaimed) and is recomputed (see the run loop). Workers
ignore Ctrl-C (the parent checkpoints and tells them to stop) and exit by themselves when
the parent is gone, so a killed run leaves nothing a live owner holds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from noisefs import faults
from noisefs.aggregate import release_all
from noisefs.arena import Arena
from noisefs.execute.local import run_batch
from noisefs.execute.protocol import BatchDone
from noisefs.sim.aer import SimulationJob
from noisefs.sim.batches import Batch

_worker_state: dict = {}


def _worker_init(
    parent: int, arena_root: str, spill_dir: str | None, timeout_s: float, job: SimulationJob
) -> None:
    faults.hold_at("worker.starting")
    # a Ctrl-C that reached this process while it started (blocked since its spawn, see
    # ProcessExecutor.submit) is dropped with the SIG_IGN before SIGINT is unblocked
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent(parent)
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
    """Simulate ``batch`` into the arena and publish its rows before its keys reach the
    parent: a worker killed after this returns leaves rows (reclaimed with it as a dead
    owner, which the parent sees as a lost batch), never keys nobody can look up."""
    arena = _worker_state["arena"]
    done = run_batch(arena, _worker_state["job"], batch)
    faults.kill_at("worker.batch-done")
    arena.publish()
    if faults.fires("worker.snapshots-lost"):
        release_all(arena, done.keys)
    return done


class ProcessExecutor:
    """Spawned worker processes; Aer in each gets an equal share of the cores."""

    needs_adopt = True
    completed = 0

    def __init__(
        self, arena, job: SimulationJob, workers: int, aer_threads: int | None = None
    ) -> None:
        threads = aer_threads or max(1, (os.cpu_count() or 1) // workers)
        self._meta = {"kind": "processes", "workers": workers, "aer_threads": aer_threads}
        spill = str(arena.spill_dir) if getattr(arena, "spill_dir", None) else None
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_worker_init,
            initargs=(
                os.getpid(),
                str(Path(arena.root)),
                spill,
                arena.timeout_s,
                job.with_threads(threads),
            ),
        )
        self.slots = 2 * workers

    def preferred_sizer(self) -> None:
        return None

    def meta(self) -> dict:
        return dict(self._meta)

    def submit(self, batch: Batch) -> Future[BatchDone]:
        # the pool spawns its workers here, on demand; SIGINT blocked meanwhile is blocked in
        # the new worker too (the mask survives exec) until _worker_init ignores it: a
        # Ctrl-C while a worker imports Qiskit no longer prints its KeyboardInterrupt
        # traceback. In this process the signal only waits for the unblock.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return self._pool.submit(_worker_run, batch)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
