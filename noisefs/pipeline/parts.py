"""The parts one run simulates with, opened together and closed on one path.

:func:`simulation_parts` opens the arena, the executor, the batch sizer, the arena sampler
and the progress bar, in that order, and closes them in reverse whatever happens: batches
still running finish, nothing of the run stays in the arena, the bar closes, the arena's
figures are taken one last time. :class:`LoopFeed` is what the run loop reports to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from noisefs import faults
from noisefs.aggregate import Aggregator, release_all
from noisefs.arena import Arena
from noisefs.execute import Executor, make_executor
from noisefs.execute.protocol import BatchDone, Sizer
from noisefs.execute.sizing import CostSizer, FixedSizer
from noisefs.interrupts import DeferredInterrupts
from noisefs.options import RunOptions
from noisefs.pipeline.budget import MemoryBudget
from noisefs.pipeline.metadata import ArenaSampler
from noisefs.pipeline.ranges import TrajectoryRanges
from noisefs.pipeline.resume import Checkpointer
from noisefs.progress import Progress
from noisefs.sim.aer import SimulationJob


@dataclass(frozen=True)
class SimulationParts:
    """What :func:`simulation_parts` opened for one run."""

    arena: object  # noisefs.arena.Arena (imported on use: the arena pulls in sqlite, xxhash)
    executor: Executor
    sizer: Sizer
    sampler: ArenaSampler
    progress: Progress


def choose_sizer(
    executor: Executor,
    options: RunOptions,
    budget: MemoryBudget,
    available: int,
    quota_bytes: int,
) -> Sizer:
    """The executor's own sizes (Dask: its groups of leaves), ``--batch``, or sizes grown
    from measured costs within the memory budget and the arena quota."""
    preferred = executor.preferred_sizer()
    if preferred is not None:
        return preferred
    if options.batch is not None:
        return FixedSizer(options.batch)
    cap = budget.max_batch(available, quota_bytes)
    if options.target_tol is not None:  # don't overshoot the stop by much
        cap = min(cap, max(32, options.trajectories // 8))
    return CostSizer(cap)


@contextlib.contextmanager
def simulation_parts(
    options: RunOptions,
    job: SimulationJob,
    aggregator: Aggregator,
    fingerprint: dict,
    budget: MemoryBudget,
    available: int,
    *,
    initial: int,
    show_progress: bool | None,
) -> Iterator[SimulationParts]:
    """Open the run's parts (``initial``: trajectories folded before this session)."""
    with Arena(
        root=options.arena_root,
        quota=options.quota_bytes,
        max_files=options.max_files,
        spill_dir=options.spill_dir,
        spill_quota=options.spill_quota_bytes,
        timeout_s=options.put_timeout_s,
    ) as arena:
        faults.hold_at("run.arena-opened")
        if options.spill_dir is not None:
            arena.prepare_spill()  # a bad --spill fails now, not when the tmpfs fills
        sampler = ArenaSampler(arena.stats())
        executor = make_executor(
            arena, job, workers=options.workers, aer_threads=options.aer_threads,
            scheduler=options.scheduler, scheduler_file=options.scheduler_file,
            shape=aggregator.shape, identity=fingerprint, batch=options.batch,
            trajectories=options.trajectories,
        )  # fmt: skip
        try:
            sizer = choose_sizer(executor, options, budget, available, arena.quota_bytes)
            progress = Progress(total=options.trajectories, initial=initial, enabled=show_progress)
        except BaseException:
            executor.shutdown()
            raise
        try:
            yield SimulationParts(arena, executor, sizer, sampler, progress)
        finally:
            try:
                faults.hold_at("run.shutting-down")
                executor.shutdown()  # batches already running finish first
                release_all(arena, arena.keys(run=job.run_name))  # what a failed release left
            finally:
                progress.close()
                sampler.sample(arena, force=True)


class LoopFeed:
    """The run loop's callbacks: progress after each folded batch; at each safe point (every
    batch folded whole or not at all) a deferred interrupt acted on and a checkpoint when
    one is due. The bar follows the larger of folded trajectories and those of finished
    parts (a Dask executor's leaves, sooner than whole groups fold), never backwards."""

    def __init__(
        self,
        parts: SimulationParts,
        aggregator: Aggregator,
        interrupts: DeferredInterrupts,
        checkpointer: Checkpointer,
        *,
        trajectories: int,
        initial: int,
        elapsed: Callable[[], float],
    ) -> None:
        self._parts = parts
        self._aggregator = aggregator
        self._interrupts = interrupts
        self._checkpointer = checkpointer
        self._trajectories = trajectories
        self._initial = initial
        self._shown = initial
        self._elapsed = elapsed

    def batch_folded(self, done: BatchDone) -> None:
        parts = self._parts
        self._show(
            max(self._aggregator.folded, self._parts_done()), parts.sampler.sample(parts.arena)
        )

    def safe_point(self, folded: TrajectoryRanges) -> None:
        self._interrupts.check()
        self._show(self._parts_done())
        if self._checkpointer.due():
            self._checkpointer.periodic(self._aggregator, folded, self._elapsed())

    def _parts_done(self) -> int:
        return self._initial + self._parts.executor.completed

    def _show(self, total: int, stats: dict | None = None) -> None:
        total = min(total, self._trajectories)
        if total > self._shown:
            parts = self._parts
            parts.progress.advance(total - self._shown, stats or parts.sampler.sample(parts.arena))
            self._shown = total
