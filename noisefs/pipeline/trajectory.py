"""One trajectory run, from circuit to :class:`~noisefs.result.Result`.

Prepare the circuit and noise model, pick the density kept and the batch sizes within the
memory budget, resume where a checkpoint says, run the loop on the arena, and write the
result file atomically at the end. The loop itself knows nothing of files.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisefs.aggregate import Aggregator, release_all
from noisefs.atomic import check_writable, remove_stale_temps, writing
from noisefs.errors import InputError, NoiseParameterError, WorkerDied
from noisefs.execute import make_executor
from noisefs.execute.protocol import BatchDone
from noisefs.interrupts import DeferredInterrupts
from noisefs.options import RunOptions
from noisefs.pipeline.budget import MemoryBudget, available_memory_bytes
from noisefs.pipeline.loop import RunLoop, within_tolerance
from noisefs.pipeline.metadata import ArenaSampler, library_versions
from noisefs.pipeline.resume import SEED_LIMIT, Checkpointer, fingerprint, start_state
from noisefs.pipeline.sizing import CostSizer, FixedSizer
from noisefs.progress import Progress
from noisefs.result import Result

log = logging.getLogger("noisefs")


@dataclass(frozen=True)
class PreparedRun:
    """The circuit with its saves, the noise model, and what the sums keep."""

    prepared: object  # noisefs.sim.circuit.PreparedCircuit
    name: str
    num_qubits: int
    noise_model: object
    steps: tuple[int, ...]
    circuit_with_saves: object
    labels: tuple[str, ...]
    executed_qasm: str
    density: str  # "full" | "reduced" | "none"

    def kept_dim(self, keep: tuple[int, ...] | None) -> int:
        return {"full": 2**self.num_qubits, "reduced": 2 ** len(keep or ()), "none": 0}[
            self.density
        ]


def prepare_run(options: RunOptions, noise) -> PreparedRun:
    from noisefs.sim.circuit import executed_qasm, insert_saves, prepare, snapshot_points
    from noisefs.sim.noise import build_noise_model

    prepared = prepare(
        options.circuit,
        optimization_level=options.optimize,
        seed_transpiler=options.seed_transpiler,
    )
    # messages name the file when there is one
    name = str(options.circuit) if isinstance(options.circuit, Path) else prepared.name
    n = prepared.num_qubits
    try:
        noise.validate(n)
    except NoiseParameterError as exc:
        raise NoiseParameterError(f"{name}: {exc}") from None
    steps = snapshot_points(prepared.circuit, options.snapshots)
    circuit_with_saves, labels = insert_saves(prepared.circuit, steps)
    keep = options.keep_qubits
    if keep is not None:
        if keep[-1] >= n:
            raise InputError(f"--keep-qubits names qubit {keep[-1]} but {name} has {n} qubits")
        density = "reduced"
    else:
        density = "full" if n <= options.max_dm_qubits else "none"
    return PreparedRun(
        prepared=prepared,
        name=name,
        num_qubits=n,
        noise_model=build_noise_model(noise, n),
        steps=tuple(int(s) for s in steps),
        circuit_with_saves=circuit_with_saves,
        labels=tuple(labels),
        executed_qasm=executed_qasm(prepared.circuit),
        density=density,
    )


def _hints(options: RunOptions, run: PreparedRun, batch: int) -> list[str]:
    hints = []
    if run.density == "full":
        hints.append("--max-dm-qubits below the qubit count or --keep-qubits")
    if options.store == "dense":
        hints.append("--store factored")
    if batch > 1:
        hints.append("a smaller --batch")
    if len(run.steps) > 1:
        hints.append("--snapshots final")
    return hints


def executor_slots(options: RunOptions) -> int:
    """Batches in flight at once for these options (see the executors)."""
    return 2 * options.workers if options.workers > 1 else 2


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
            run.kept_dim(opts.keep_qubits),
            executor_slots(opts),
            opts.workers,
        )
        available = available_memory_bytes()
        budget.check(opts.batch or 1, available, run.name, _hints(opts, run, opts.batch or 1))
        self.timing["prepare_s"] = time.perf_counter() - started

        versions = library_versions()
        aggregator = Aggregator(run.num_qubits, len(run.steps), run.density, opts.keep_qubits)
        run_fingerprint = fingerprint(
            versions=versions,
            circuit_sha256=run.prepared.source_sha256,
            executed_qasm=run.executed_qasm,
            steps=list(run.steps),
            trajectories=opts.trajectories,
            noise_meta=self.noise.to_meta(),
            density=run.density,
            keep_qubits=opts.keep_qubits,
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
        from noisefs.sim.aer import SimulationJob

        job = SimulationJob(
            run.circuit_with_saves,
            run.labels,
            run.noise_model,
            opts.store,
            f"{_safe_name(Path(run.name).stem)}-{secrets.token_hex(4)}",
        )
        loop_started = time.perf_counter()
        loop, sampler = self._simulate_and_fold(
            job, aggregator, start, checkpointer, budget, available
        )
        self.timing["run_s"] = time.perf_counter() - loop_started
        for name in ("simulate_s", "store_s", "fold_s"):
            self.timing[name] = getattr(loop.stats, name)
        result = self._result(run, aggregator, start.seed, loop, sampler, versions)
        if opts.output is not None:
            write_started = time.perf_counter()
            self.timing["total_s"] = self._elapsed()
            result.meta["timing"] = dict(self.timing)
            try:
                with writing(opts.output):
                    result.save(opts.output)
            except BaseException:  # keep the finished sums: --resume then only writes
                try:
                    checkpointer.write(aggregator, loop.folded, self._elapsed())
                except Exception:  # noqa: BLE001 - the write error itself is what to report
                    log.debug("no checkpoint either", exc_info=True)
                raise
            self.timing["write_s"] = time.perf_counter() - write_started
            checkpointer.remove()
        self.timing["total_s"] = self._elapsed()
        result.meta["timing"] = dict(self.timing)
        return result

    def _simulate_and_fold(self, job, aggregator, start, checkpointer, budget, available):
        from noisefs.arena import Arena

        opts = self.options
        with Arena(
            root=opts.arena_root,
            quota=opts.quota_bytes,
            max_files=opts.max_files,
            spill_dir=opts.spill_dir,
            spill_quota=opts.spill_quota_bytes,
            timeout_s=opts.put_timeout_s,
        ) as arena:
            if opts.spill_dir is not None:
                arena.prepare_spill()  # a bad --spill fails now, not when the tmpfs fills
            sampler = ArenaSampler(arena.stats())
            executor = make_executor(
                arena, job, workers=opts.workers, aer_threads=opts.aer_threads,
                scheduler=opts.scheduler,
                scheduler_file=getattr(opts, "scheduler_file", None),
                aggregator=aggregator, identity=checkpointer.fingerprint, batch=opts.batch,
                trajectories=opts.trajectories,
            )  # fmt: skip
            # -- sizer choice: a Dask executor's batches are its groups of leaves
            preferred = getattr(executor, "preferred_sizer", None)
            if preferred is not None:
                sizer = preferred()
            elif opts.batch is not None:
                sizer = FixedSizer(opts.batch)
            else:
                cap = budget.max_batch(available, arena.quota_bytes)
                if opts.target_tol is not None:  # don't overshoot the stop by much
                    cap = min(cap, max(32, opts.trajectories // 8))
                sizer = CostSizer(cap)
            progress = Progress(
                total=opts.trajectories, initial=start.folded.total, enabled=self.show_progress
            )
            interrupts = DeferredInterrupts()
            # -- progress: a Dask executor counts finished leaves (``completed``), sooner
            # than whole groups fold; the bar follows the larger count, never backwards
            shown = [start.folded.total]

            def show(total: int, stats: dict | None = None) -> None:
                total = min(total, opts.trajectories)
                if total > shown[0]:
                    progress.advance(total - shown[0], stats or sampler.sample(arena))
                    shown[0] = total

            initial = start.folded.total

            def leaves_done() -> int:
                return initial + getattr(executor, "completed", 0)

            def on_batch(done: BatchDone) -> None:
                show(max(loop.folded.total, leaves_done()), sampler.sample(arena))

            def on_tick() -> None:
                interrupts.check()
                show(leaves_done())
                if checkpointer.due() and not loop.folding:
                    checkpointer.write(aggregator, loop.folded, self._elapsed())

            loop = RunLoop(
                executor,
                arena,
                aggregator,
                trajectories=opts.trajectories,
                seed=start.seed,
                folded=start.folded,
                sizer=sizer,
                store=opts.store,
                target_tol=opts.target_tol,
                on_batch=on_batch,
                on_tick=on_tick,
            )
            try:
                with interrupts, _worker_failures(interrupts):
                    loop.run()
            except BaseException as exc:
                # batches already running finish; then nothing of this run may stay behind.
                # A second Ctrl-C waits for that: it would otherwise strand their snapshots.
                with DeferredInterrupts():
                    executor.shutdown()
                    release_all(arena, arena.keys(run=job.run_name))
                if loop.folding:  # a batch is half folded: keep the last consistent checkpoint
                    log.warning("stopped in the middle of folding a batch; not checkpointing")
                else:
                    checkpointer.write(aggregator, loop.folded, self._elapsed())
                if isinstance(exc, KeyboardInterrupt) and opts.output is not None:
                    raise KeyboardInterrupt(
                        f"{aggregator.folded} of {opts.trajectories} trajectories folded; rerun "
                        "the same command with --resume to continue"
                    ) from None
                raise
            finally:
                executor.shutdown()
                progress.close()
                sampler.sample(arena, force=True)
            release_all(arena, arena.keys(run=job.run_name))  # whatever a failed release left
        return loop, sampler

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

    def _result(self, run, aggregator, seed, loop, sampler, versions) -> Result:
        opts = self.options
        if not loop.folded.is_prefix():  # the stop rule's promise, checked
            raise AssertionError(f"folded trajectories are not contiguous: {loop.folded}")
        meta = {
            "versions": versions,
            "circuit": run.name,
            "circuit_sha256": run.prepared.source_sha256,
            "executed_qasm": run.executed_qasm,
            "num_qubits": run.num_qubits,
            "noise": self.noise.to_meta(),
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
            "execution": _execution_meta(loop.executor, opts),
            "density": run.density,
            "keep_qubits": list(opts.keep_qubits) if opts.keep_qubits else None,
            "arena": sampler.meta(str(opts.arena_root or "")),
        }
        return Result(
            rho=aggregator.rho(),
            probabilities=aggregator.probabilities(),
            steps=np.asarray(run.steps, dtype=np.int64),
            trajectories=aggregator.folded,
            z_mean=aggregator.z_mean(),
            z_stderr=aggregator.z_stderr(),
            meta=meta,
        )


@contextlib.contextmanager
def _worker_failures(interrupts: DeferredInterrupts) -> Iterator[None]:
    """A dead worker process (``BrokenProcessPool``) as one clear error, or as the
    interrupt it was when Ctrl-C reached the workers too (one process group)."""
    from concurrent.futures.process import BrokenProcessPool

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


def _execution_meta(executor, opts: RunOptions) -> dict:
    """Where the batches ran: ``local`` (a thread), ``processes`` or ``dask`` (with its plan)."""
    if opts.scheduler is not None or opts.scheduler_file is not None:
        return {"kind": "dask", **executor.meta()}
    kind = "processes" if opts.workers > 1 else "local"
    return {"kind": kind, "workers": opts.workers, "aer_threads": opts.aer_threads}


def _safe_name(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".")
    return (cleaned or "run")[:64]
