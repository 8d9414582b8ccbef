"""One trajectory run, from circuit to :class:`~noisefs.result.Result`.

Prepare the circuit and noise model, pick the density kept and the batch sizes within the
memory budget, resume where a checkpoint says, run the loop on the arena, and write the
result file atomically at the end. The loop itself knows nothing of files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from noisefs import faults
from noisefs.aggregate import Aggregator
from noisefs.atomic import check_writable, remove_stale_temps, writing
from noisefs.errors import InputError, OutputError, WorkerDied
from noisefs.interrupts import DeferredInterrupts
from noisefs.options import RunOptions
from noisefs.pipeline.budget import MemoryBudget, available_memory_bytes
from noisefs.pipeline.loop import RunLoop, within_tolerance
from noisefs.pipeline.metadata import library_versions
from noisefs.pipeline.parts import LoopFeed, SimulationParts, simulation_parts
from noisefs.pipeline.prepared import PreparedRun, executor_slots, memory_hints, prepare_run
from noisefs.pipeline.resume import (
    SEED_LIMIT,
    Checkpointer,
    fingerprint,
    full_disk,
    start_state,
)
from noisefs.result import Result
from noisefs.sim.aer import SimulationJob

log = logging.getLogger("noisefs")


class TrajectoryRun:
    """A configured run; :meth:`execute` does the work and returns the result."""

    def __init__(self, options: RunOptions, noise, show_progress: bool | None = False) -> None:
        self.options = options
        self.noise = noise
        self.show_progress = show_progress
        self.timing: dict[str, float] = {}
        self._started = time.perf_counter()
        self._elapsed_before = 0.0

    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._started

    def execute(self) -> Result:
        opts = self.options
        if opts.output is not None:
            check_writable(opts.output)
            remove_stale_temps(opts.output)  # what a SIGKILL during a write left
            remove_stale_temps(Checkpointer(opts.output, {}, 0, 0).path)
        started = time.perf_counter()
        run = prepare_run(opts, self.noise)
        budget = MemoryBudget(
            run.num_qubits,
            len(run.steps),
            opts.store,
            run.kept_dim(),
            executor_slots(opts),
            opts.workers,
        )
        available = available_memory_bytes()
        hints = memory_hints(opts, run, opts.batch or 1)
        budget.check(opts.batch or 1, available, run.name, hints)
        self.timing["prepare_s"] = time.perf_counter() - started

        versions = library_versions()
        aggregator = Aggregator(
            run.num_qubits,
            len(run.steps),
            run.density,
            run.keep,
            run.observables,
            run.orders,
            opts.probabilities,
        )
        run_fingerprint = fingerprint(
            versions=versions,
            circuit_sha256=run.prepared.source_sha256,
            executed_qasm=run.executed_qasm,
            steps=list(run.steps),
            trajectories=opts.trajectories,
            noise_meta=run.noise.to_meta(),
            density=run.density,
            keep_qubits=run.keep,
            observables=run.observables.to_meta() if run.observables else None,
            probabilities=opts.probabilities,
        )
        start = start_state(opts.output, opts.resume, opts.seed, run_fingerprint, aggregator)
        if start.seed + opts.trajectories - 1 >= SEED_LIMIT:
            raise InputError(
                f"--seed {start.seed} + --trajectories {opts.trajectories} exceeds Aer's seed range (2**63)"
            )
        self._elapsed_before = start.elapsed_s
        checkpointer = Checkpointer(
            opts.output, run_fingerprint, start.seed, opts.checkpoint_interval_s
        )
        job = SimulationJob(
            run.circuit_with_saves,
            run.labels,
            run.noise_model,
            opts.store,
            f"{_safe_name(Path(run.name).stem)}-{secrets.token_hex(4)}",
        )
        # One deferral from the first batch to the written result: Ctrl-C and SIGTERM act
        # at the loop's safe points; after the last batch they wait for the result (a run
        # then ends complete, never with its folded work lost).
        with DeferredInterrupts() as interrupts:
            loop: RunLoop | None = None
            try:
                loop_started = time.perf_counter()
                with simulation_parts(
                    opts, job, aggregator, checkpointer.fingerprint, budget, available,
                    initial=start.folded.total, show_progress=self.show_progress,
                ) as parts:  # fmt: skip
                    feed = LoopFeed(
                        parts, aggregator, interrupts, checkpointer,
                        trajectories=opts.trajectories, initial=start.folded.total,
                        elapsed=self._elapsed,
                    )  # fmt: skip
                    loop = RunLoop(
                        parts.executor,
                        parts.arena,
                        aggregator,
                        trajectories=opts.trajectories,
                        seed=start.seed,
                        folded=start.folded,
                        sizer=parts.sizer,
                        store=opts.store,
                        target_tol=opts.target_tol,
                        on_batch=feed.batch_folded,
                        on_tick=feed.safe_point,
                    )
                    with _worker_failures(interrupts):
                        loop.run()
                    faults.signal_at("run.last-window")
                self.timing["run_s"] = time.perf_counter() - loop_started
                for name in ("simulate_s", "store_s", "fold_s", "fold_cpu_s"):
                    self.timing[name] = getattr(loop.stats, name)
                result = self._result(run, aggregator, start.seed, loop, parts, versions)
                if opts.output is not None:
                    self._write(result, lambda: interrupts.pending)
            except BaseException as exc:
                self._keep_folded(loop, aggregator, checkpointer)
                if isinstance(exc, KeyboardInterrupt) and opts.output is not None:
                    raise KeyboardInterrupt(
                        f"{aggregator.folded} of {opts.trajectories} trajectories folded; rerun "
                        "the same command with --resume to continue"
                    ) from None
                raise
            if interrupts.discard():
                log.warning("interrupted after the last batch: the result is complete")
        checkpointer.remove()
        self.timing["total_s"] = self._elapsed()
        result.meta["timing"] = dict(self.timing)
        return result

    def _write(self, result: Result, interrupted) -> None:
        """Write the result; on a full disk, wait for room (backpressure) up to
        ``--put-timeout`` or an interrupt, then fail (exit 3: the checkpoint is written if
        it fits, else the last one is kept)."""
        faults.signal_at("run.last-window")
        write_started = time.perf_counter()
        self.timing["total_s"] = self._elapsed()
        result.meta["timing"] = dict(self.timing)
        deadline = time.monotonic() + self.options.put_timeout_s
        waiting = False
        while True:
            try:
                with writing(self.options.output):
                    result.save(self.options.output)
                break
            except OutputError as exc:
                if not full_disk(exc) or time.monotonic() >= deadline or interrupted():
                    raise
                if _never_fits(result, self.options.output):
                    raise  # a filesystem smaller than the result: no use waiting
                if not waiting:
                    log.warning("%s; waiting up to %g s for room", exc, self.options.put_timeout_s)
                    waiting = True
                time.sleep(0.2)
        faults.hold_at("result.written")
        self.timing["write_s"] = time.perf_counter() - write_started

    def _keep_folded(
        self, loop: RunLoop | None, aggregator: Aggregator, checkpointer: Checkpointer
    ) -> None:
        """A failed or interrupted run checkpoints what it folded (for --resume); a run
        stopped before its loop began keeps the checkpoint it started from."""
        if loop is None:
            return
        if loop.folding:  # a batch is half folded: keep the last consistent checkpoint
            log.warning("stopped in the middle of folding a batch; not checkpointing")
            return
        try:
            checkpointer.write(aggregator, loop.folded, self._elapsed())
        except Exception:  # noqa: BLE001 - the error that stopped the run is what to report
            log.debug("no checkpoint either", exc_info=True)

    def _target_reached(self, aggregator: Aggregator) -> bool | None:
        """Whether ``--target-tol`` was met (None without one); warns when it was not."""
        tol = self.options.target_tol
        if tol is None:
            return None
        reached = within_tolerance(aggregator, tol)
        if not reached:
            log.warning(
                "--target-tol %g not reached: largest <Z> standard error %.3g after %d trajectories; "
                "raise --trajectories",
                tol,
                float(np.max(aggregator.z_stderr())),
                aggregator.folded,
            )
        return reached

    def _result(
        self,
        run: PreparedRun,
        aggregator: Aggregator,
        seed: int,
        loop: RunLoop,
        parts: SimulationParts,
        versions: dict,
    ) -> Result:
        opts = self.options
        if not loop.folded.is_prefix():  # the stop rule's promise, checked
            raise AssertionError(f"folded trajectories are not contiguous: {loop.folded}")
        meta = {
            "versions": versions,
            "circuit": run.name,
            "circuit_sha256": run.prepared.source_sha256,
            "executed_qasm": run.executed_qasm,
            "num_qubits": run.num_qubits,
            "noise": run.noise.to_meta(),
            "device": run.device,
            "step_orders": {
                str(s): list(o) for s, o in zip(run.steps, run.orders, strict=True) if o
            }
            if run.orders
            else None,
            "seed": seed,
            "seed_transpiler": opts.seed_transpiler,
            "optimize": opts.optimize,
            "trajectories": aggregator.folded,
            "trajectories_requested": opts.trajectories,
            "target_tol": opts.target_tol,
            "target_reached": self._target_reached(aggregator),
            "batch": opts.batch if opts.batch is not None else loop.stats.largest_batch,
            "batch_sizing": "fixed" if opts.batch is not None else "cost",
            "batches": loop.stats.batches,
            "snapshots": opts.snapshots,
            "store": opts.store,
            "workers": opts.workers,
            "execution": parts.executor.meta(),
            "density": run.density,
            "keep_qubits": list(run.keep) if run.keep else None,
            "arena": parts.sampler.meta(str(opts.arena_root or "")),
            "observables": run.observables.to_meta() if run.observables else None,
        }
        observed = run.observables is not None
        user = run.num_user  # spare device qubits (after the user's) are summed out
        probabilities = aggregator.probabilities()
        if probabilities is not None:
            probabilities = probabilities.reshape(len(run.steps), -1, 2**user).sum(axis=1)
        return Result(
            rho=aggregator.rho(),
            probabilities=probabilities,
            steps=np.asarray(run.steps, dtype=np.int64),
            trajectories=aggregator.folded,
            z_mean=aggregator.z_mean()[:, :user],
            z_stderr=aggregator.z_stderr()[:, :user],
            meta=meta,
            observables=aggregator.observables_mean() if observed else None,
            observables_stderr=aggregator.observables_stderr() if observed else None,
            observable_names=np.array(run.observables.names, dtype=np.str_) if observed else None,
        )


@contextlib.contextmanager
def _worker_failures(interrupts: DeferredInterrupts) -> Iterator[None]:
    """A dead worker process (``BrokenProcessPool``) as one clear error, or as the
    interrupt it was when Ctrl-C reached the workers too (one process group)."""
    try:
        yield
    except BrokenProcessPool:
        if interrupts.pending:
            raise KeyboardInterrupt from None
        raise WorkerDied(
            "a worker process died (killed by the system, out of memory?; from Python, "
            "workers>1 needs the caller under `if __name__ == '__main__':`); with an output "
            "file the batches folded so far are checkpointed: rerun with --resume"
        ) from None


def _never_fits(result: Result, output) -> bool:
    """Whether ``output``'s filesystem is too small for ``result``'s arrays even empty."""
    arrays = vars(result).values()
    needed = sum(value.nbytes for value in arrays if isinstance(value, np.ndarray))
    st = os.statvfs(Path(output).parent)
    return st.f_blocks * st.f_frsize < needed


def _safe_name(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".")
    return (cleaned or "run")[:64]
