"""Executors: where batches are simulated (see :mod:`noisefs.execute.protocol`).

:func:`make_executor` is the one place that picks the backend from the run's options:
a Dask cluster (``scheduler``), local worker processes (``workers > 1``), or a thread.
"""

from __future__ import annotations

from noisefs.execute.local import LocalExecutor
from noisefs.execute.processes import ProcessExecutor
from noisefs.execute.protocol import BatchDone, Executor
from noisefs.sim.aer import SimulationJob


def make_executor(
    arena,
    job: SimulationJob,
    *,
    workers: int = 1,
    aer_threads: int | None = None,
    scheduler=None,
    scheduler_file=None,
    **run,
) -> Executor:
    """The executor for these options; every one satisfies :class:`Executor`.

    ``run`` is what the Dask executor plans with (``aggregator``, ``identity``, ``batch``,
    ``trajectories``; see :class:`noisefs.execute.dask.DaskExecutor`); local executors
    need none of it. ``aer_threads`` is Aer's thread count in each simulating process
    (default: all cores for one thread of this process, the cores shared among workers)."""
    if scheduler is not None or scheduler_file is not None:
        from noisefs.execute.dask import DaskExecutor  # lazy: distributed, an optional extra

        return DaskExecutor(arena, job, scheduler, scheduler_file=scheduler_file, **run)
    if workers > 1:
        return ProcessExecutor(arena, job, workers, aer_threads=aer_threads)
    return LocalExecutor(arena, job.with_threads(aer_threads or 0))


__all__ = ["BatchDone", "Executor", "make_executor"]
