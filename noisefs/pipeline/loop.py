"""The run loop: batches (the seed contract) → an executor → fold-and-release → sums.

Independent of files and of the CLI. The loop keeps the executor's slots full with the
lowest trajectories not yet folded or in flight, folds each finished batch whole (arena
keys through :func:`noisefs.aggregate.fold_batch`, or partial sums merged in submission
order, so remote results add up the same whatever order they arrive in), and records
folded trajectories as ranges.

Stop rule (``target_tol``): once every ⟨Z_q⟩ standard error is within the tolerance
(after at least ``MIN_TRAJECTORIES_FOR_TOL``), no batch beyond what is folded or in
flight is started, but the gaps below it still run: the folded set must be exactly
trajectories 0 .. K'-1, the K' the result claims.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field

import numpy as np

from noisefs import faults
from noisefs.aggregate import Aggregator, fold_batch, release_all
from noisefs.errors import ArenaError, CorruptSnapshot
from noisefs.execute.protocol import BatchDone, Executor, Sizer
from noisefs.pipeline.ranges import TrajectoryRanges
from noisefs.sim.batches import Batch, batch_for

log = logging.getLogger("noisefs")

MIN_TRAJECTORIES_FOR_TOL = 32
POLL_S = 0.25
MAX_LOSSES = 3  # a batch whose snapshots vanish this often is a storage failure, not bad luck


def within_tolerance(aggregator: Aggregator, tol: float) -> bool:
    """Whether every ⟨Z_q⟩ standard error, and every observable's, is at most ``tol``."""
    return bool(np.all(aggregator.z_stderr() <= tol)) and bool(
        np.all(aggregator.observables_stderr() <= tol)
    )


def may_stop(aggregator: Aggregator, tol: float | None) -> bool:
    """Whether to stop early: a tolerance met by enough trajectories to mean something."""
    return (
        tol is not None
        and aggregator.folded >= MIN_TRAJECTORIES_FOR_TOL
        and within_tolerance(aggregator, tol)
    )


@dataclass
class LoopStats:
    """Seconds spent per phase (summed over batches) and the batch sizes used."""

    simulate_s: float = 0.0
    store_s: float = 0.0
    fold_s: float = 0.0
    fold_cpu_s: float = 0.0  # the loop thread's CPU in folds: wall minus waits for the GIL
    batches: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list)


class RunLoop:
    """Folds trajectories [0, ``trajectories``) not yet in ``folded`` into ``aggregator``.

    ``sizer`` gives batch sizes (``next_size``) and learns from finished ones
    (``observe``); ``on_batch(batch_done)`` runs after each fold (progress),
    ``on_tick(folded)`` at each safe point (interrupt checks, checkpoints).
    """

    def __init__(
        self,
        executor: Executor,
        arena,
        aggregator: Aggregator,
        *,
        trajectories: int,
        seed: int,
        folded: TrajectoryRanges,
        sizer: Sizer,
        store: str,
        target_tol: float | None = None,
        on_batch: Callable[[BatchDone], None] | None = None,
        on_tick: Callable[[TrajectoryRanges], None] | None = None,
    ) -> None:
        self.executor = executor
        self.arena = arena
        self.aggregator = aggregator
        self.trajectories = trajectories
        self.seed = seed
        self.folded = folded
        self.sizer = sizer
        self.store = store
        self.target_tol = target_tol
        self.on_batch = on_batch
        self.on_tick = on_tick
        self.stats = LoopStats()
        self.stopped_early = False
        self.in_flight: dict[Future, Batch] = {}
        # True while a batch is between its first and its last fold: the sums are then
        # inconsistent with ``folded`` and must not be checkpointed
        self.folding = False
        self._limit = trajectories
        self._next_index = 0
        self._submitted = TrajectoryRanges()  # folded or in flight
        for start, stop in folded.to_array():
            self._submitted.add(int(start), int(stop))
        self._sums_waiting: dict[int, BatchDone] = {}
        self._next_sums_index = 0
        self._losses: dict[int, int] = {}  # batch index -> times its snapshots were lost

    # -- planning ------------------------------------------------------------------------

    def _next_batch(self) -> Batch | None:
        for start, stop in self._submitted.gaps(self._limit):
            size = min(self.sizer.next_size(), stop - start)
            batch = batch_for(self._next_index, start, size, self.seed)
            self._next_index += 1
            self._submitted.add(batch.start, batch.stop)
            return batch
        return None

    def _fill(self) -> None:
        while len(self.in_flight) < self.executor.slots:
            batch = self._next_batch()
            if batch is None:
                return
            self.in_flight[self.executor.submit(batch)] = batch

    # -- folding -------------------------------------------------------------------------

    def _fold(self, done: BatchDone) -> None:
        started, cpu_started = time.perf_counter(), time.thread_time()
        if done.sums is not None:
            self._merge_in_order(done)
        else:
            if self.executor.needs_adopt and not self._adopt(done):
                return
            faults.damage_at("run.snapshot-damaged", self.arena, done.keys[0])
            try:
                fold_batch(
                    self.arena,
                    done.keys,
                    self.aggregator,
                    self.store,
                    on_first_fold=self._folding_starts,
                    on_folded=self._folded(done),
                )
            except CorruptSnapshot as exc:
                if self.folding:  # (never: every snapshot is verified before any fold)
                    raise
                self._lost(done, f"one of them does not verify ({exc})")
                return
        self._account(done, time.perf_counter() - started, time.thread_time() - cpu_started)

    def _adopt(self, done: BatchDone) -> bool:
        """Take over a batch another process put; False when its snapshots are gone (their
        writer died and was reclaimed): the batch is then lost, and simulated again from
        its seeds, which gives the same trajectories."""
        try:
            self.arena.adopt(list(done.keys))
            return True
        except KeyError:
            pass
        self._lost(done, "their worker died?")
        return False

    def _lost(self, done: BatchDone, why: str) -> None:
        """A batch whose snapshots are gone or damaged (nothing of it folded): simulated
        again from its seeds, which gives the same trajectories."""
        release_all(self.arena, done.keys)  # what of the batch is still there
        batch = done.batch
        losses = self._losses[batch.index] = self._losses.get(batch.index, 0) + 1
        if losses >= MAX_LOSSES:
            raise ArenaError(
                f"the snapshots of trajectories {batch.start}-{batch.stop - 1} were lost "
                f"{losses} times before they could be folded (workers dying?); the batches "
                "folded so far are checkpointed: rerun with --resume"
            )
        log.warning(
            "the snapshots of trajectories %d-%d were lost before they were folded (%s); "
            "simulating them again",
            batch.start,
            batch.stop - 1,
            why,
        )
        self.in_flight[self.executor.submit(batch)] = batch

    def _folding_starts(self) -> None:
        self.folding = True

    def _folded(self, done: BatchDone) -> Callable[[], None]:
        def mark() -> None:
            self.folded.add(done.batch.start, done.batch.stop)
            self.folding = False

        return mark

    def _merge_in_order(self, done: BatchDone) -> None:
        """Partial sums are added in submission order: floating-point addition is not
        associative, and the result must not depend on which worker finished first."""
        self._sums_waiting[done.batch.index] = done
        while self._next_sums_index in self._sums_waiting:
            ready = self._sums_waiting.pop(self._next_sums_index)
            part = self.aggregator.shape.empty()
            part.load_state(ready.sums)
            self.folding = True
            self.aggregator.merge(part)
            self._folded(ready)()
            self._next_sums_index += 1

    def _account(self, done: BatchDone, fold_s: float, fold_cpu_s: float) -> None:
        stats = self.stats
        stats.simulate_s += done.simulate_s
        stats.store_s += done.store_s
        stats.fold_s += fold_s
        stats.fold_cpu_s += fold_cpu_s
        stats.batches += 1
        stats.largest_batch = max(stats.largest_batch, done.size)
        self.sizer.observe(done.size, done.simulate_s)
        if self.on_batch is not None:
            self.on_batch(done)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Run until every trajectory below the limit is folded (or the stop rule holds).

        Exceptions propagate with in-flight futures cancelled; the caller shuts the
        executor down and releases what the run left in the arena."""
        try:
            self._loop()
        except BaseException:
            for future in self.in_flight:
                future.cancel()
            raise

    def _loop(self) -> None:
        while True:
            if self.on_tick is not None:
                self.on_tick(self.folded)  # a safe point: every batch folded whole or not at all
            self._fill()
            if not self.in_flight:
                return
            finished, _ = wait(list(self.in_flight), timeout=POLL_S, return_when=FIRST_COMPLETED)
            # in submission order: a set's order is its members' addresses, and the
            # sums must not depend on it (floating-point addition is not associative)
            for future in sorted(finished, key=lambda f: self.in_flight[f].index):
                self.in_flight.pop(future)
                self._fold(future.result())
            if not self.stopped_early and may_stop(self.aggregator, self.target_tol):
                self.stopped_early = True
                # all below anything in flight was submitted: the set stays contiguous
                highest_in_flight = max((b.stop for b in self.in_flight.values()), default=0)
                self._limit = max(self.folded.highest, highest_in_flight)
