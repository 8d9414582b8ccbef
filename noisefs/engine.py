"""One trajectory run from circuit file to :class:`~noisefs.result.Result`.

Prepare the circuit and noise model, simulate batches (threads, processes or Dask), fold
each batch's snapshots from the arena as soon as they land and release them, checkpoint
the sums atomically, and write the result file atomically at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from concurrent.futures import FIRST_COMPLETED, wait

import numpy as np

from noisefs import __version__
from noisefs.aggregate import Aggregator
from noisefs.atomic import check_writable, remove_stale_temps, writing
from noisefs.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
from noisefs.errors import InputError, NoiseParameterError, TooLargeError, WorkerDied
from noisefs.interrupts import DeferredInterrupts
from noisefs.options import RunOptions, default_batch
from noisefs.progress import Progress
from noisefs.result import Result
from noisefs.sim.runner import BatchDone, SimulationJob, plan_batches

log = logging.getLogger("noisefs")

SEED_LIMIT = 2**63  # Aer takes seed_simulator as a signed 64-bit integer
MIN_TRAJECTORIES_FOR_TOL = 32


def _available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class TrajectoryRun:
    """A configured run; :meth:`execute` does the work and returns the result."""

    def __init__(self, options: RunOptions, noise, show_progress: bool | None = False) -> None:
        self.options = options
        self.noise = noise
        self.show_progress = show_progress
        self.timing: dict[str, float] = {}
        self._folding = False  # True while a batch is between its first and last fold
        self.arena_peaks = {
            "peak_bytes": 0,
            "peak_files": 0,
            "spilled_bytes": 0,
            "spilled_files": 0,
        }

    # -- preparation ---------------------------------------------------------------------

    def _prepare(self) -> None:
        from noisefs.sim.circuit import executed_qasm, insert_saves, prepare, snapshot_points
        from noisefs.sim.noise import build_noise_model

        opts = self.options
        started = time.perf_counter()
        self.prepared = prepare(
            opts.circuit, optimization_level=opts.optimize, seed_transpiler=opts.seed_transpiler
        )
        circuit = self.prepared.circuit
        n = self.num_qubits = self.prepared.num_qubits
        try:
            self.noise.validate(n)
        except NoiseParameterError as exc:
            raise NoiseParameterError(f"{opts.circuit}: {exc}") from None
        self.noise_model = build_noise_model(self.noise, n)
        self.steps = snapshot_points(circuit, opts.snapshots)
        self.circuit_with_saves, labels = insert_saves(circuit, self.steps)
        self.labels = tuple(labels)
        self.executed_qasm = executed_qasm(circuit)
        if opts.keep_qubits is not None:
            if opts.keep_qubits[-1] >= n:
                raise InputError(
                    f"--keep-qubits names qubit {opts.keep_qubits[-1]} but {opts.circuit} has {n} qubits"
                )
            self.density = "reduced"
        elif n <= opts.max_dm_qubits:
            self.density = "full"
        else:
            self.density = "none"
        self.batch_size = opts.batch or default_batch(n, len(self.steps), opts.store)
        self._check_fits()
        self.timing["prepare_s"] = time.perf_counter() - started

    def _check_fits(self) -> None:
        """Refuse, with an estimate, a job that cannot fit in this machine's memory."""
        opts, n, s = self.options, self.num_qubits, len(self.steps)
        dim = 2**n
        kept_dim = {"full": dim, "reduced": 2 ** len(opts.keep_qubits or ()), "none": 0}[
            self.density
        ]
        per_snapshot = 16 * dim * (dim if opts.store == "dense" else 1)
        in_flight = 2 * max(1, opts.workers) * self.batch_size * s * per_snapshot * 2
        needed = (
            in_flight  # Aer's results and our stacked copies of batches in flight
            + 2 * s * 16 * kept_dim**2  # running sums and the finished average
            + 3 * s * 8 * dim  # probabilities
            + max(1, opts.workers) * 16 * dim * 2  # Aer's own state vectors
        )
        available = _available_memory_bytes()
        if needed > 0.8 * available:
            hint = []
            if self.density == "full":
                hint.append("--max-dm-qubits below the qubit count or --keep-qubits")
            if opts.store == "dense":
                hint.append("--store factored")
            if self.batch_size > 1:
                hint.append("a smaller --batch")
            if s > 1:
                hint.append("--snapshots final")
            raise TooLargeError(
                f"{opts.circuit}: {n} qubits with {s} snapshot(s) need about {needed / 2**30:.1f} GiB of memory, "
                f"but {available / 2**30:.1f} GiB is available; try {', '.join(hint) or 'fewer qubits or a machine with more memory'}"
            )

    def _fingerprint(self) -> dict:
        opts = self.options
        versions = _library_versions()
        return {
            # another Aer or Qiskit may draw other random numbers for the same seeds
            "versions": [versions["qiskit"], versions["qiskit-aer"]],
            "circuit_sha256": self.prepared.source_sha256,
            "executed_sha256": hashlib.sha256(self.executed_qasm.encode()).hexdigest(),
            "steps": list(map(int, self.steps)),
            "trajectories": opts.trajectories,
            "noise": self.noise.to_meta(),
            "density": self.density,
            "keep_qubits": list(opts.keep_qubits) if opts.keep_qubits else None,
        }

    # -- the run -------------------------------------------------------------------------

    def execute(self) -> Result:
        started = time.perf_counter()
        if self.options.output is not None:
            check_writable(self.options.output)
            for path in (self.options.output, checkpoint_path(self.options.output)):
                remove_stale_temps(path)  # what a SIGKILL during a write left
        self._prepare()
        opts = self.options
        aggregator = Aggregator(self.num_qubits, len(self.steps), self.density, opts.keep_qubits)
        seed, done, elapsed_before = self._start_state(aggregator)
        if seed + opts.trajectories - 1 >= SEED_LIMIT:
            raise InputError(
                f"--seed {seed} + --trajectories {opts.trajectories} exceeds Aer's seed range (2**63)"
            )
        batches = plan_batches(opts.trajectories, self.batch_size, seed)
        if done.size == 0:
            done = np.zeros(len(batches), dtype=bool)
        elif done.size != len(batches):
            raise InputError(
                f"{checkpoint_path(opts.output)} does not match this run ({done.size} batches, not "
                f"{len(batches)}); rerun without --resume to start afresh"
            )
        self.seed, self.done = seed, done
        self.elapsed_before, self.started = elapsed_before, started  # for _elapsed()
        run_name = f"{_safe_name(opts.circuit.stem)}-{secrets.token_hex(4)}"
        job = SimulationJob(
            self.circuit_with_saves, self.labels, self.noise_model, opts.store, run_name
        )
        fold_started = time.perf_counter()
        try:
            self._simulate_and_fold(job, batches, aggregator)
        except BaseException as exc:
            if self._folding:  # a batch is half folded: keep the last consistent checkpoint
                log.warning("stopped in the middle of folding a batch; not checkpointing")
            else:
                self._checkpoint(aggregator, self._elapsed())
            if isinstance(exc, KeyboardInterrupt) and opts.output is not None:
                folded = int(aggregator.count[-1]) if aggregator.count.size else 0
                raise KeyboardInterrupt(
                    f"{folded} of {opts.trajectories} trajectories folded; rerun the same command "
                    "with --resume to continue"
                ) from None
            raise
        self.timing["run_s"] = time.perf_counter() - fold_started
        result = self._result(aggregator)
        if opts.output is not None:
            write_started = time.perf_counter()
            self.timing["total_s"] = self._elapsed()
            result.meta["timing"] = dict(self.timing)
            try:
                with writing(opts.output):
                    result.save(opts.output)
            except BaseException:  # keep the finished sums: --resume then only writes
                try:
                    self._checkpoint(aggregator, self._elapsed())
                except Exception:  # noqa: BLE001 - the write error itself is what to report
                    log.debug("no checkpoint either", exc_info=True)
                raise
            self.timing["write_s"] = time.perf_counter() - write_started
            checkpoint_path(opts.output).unlink(missing_ok=True)
        self.timing["total_s"] = self._elapsed()
        result.meta["timing"] = dict(self.timing)
        return result

    def _start_state(self, aggregator: Aggregator) -> tuple[int, np.ndarray, float]:
        opts = self.options
        fingerprint = self._fingerprint()
        if opts.resume and opts.output is not None:
            checkpoint = load_checkpoint(checkpoint_path(opts.output))
            if checkpoint is not None:
                if checkpoint.fingerprint != fingerprint:
                    raise InputError(
                        f"{checkpoint_path(opts.output)} was written by a run with another circuit or options; "
                        "rerun with the same ones, or without --resume to start afresh"
                    )
                if opts.seed is not None and opts.seed != checkpoint.seed:
                    raise InputError(
                        f"--seed {opts.seed} differs from the interrupted run's seed {checkpoint.seed}"
                    )
                if opts.batch is not None and opts.batch != checkpoint.batch:
                    raise InputError(
                        f"--batch {opts.batch} differs from the interrupted run's batch {checkpoint.batch}"
                    )
                self.batch_size = checkpoint.batch
                aggregator.load_state(checkpoint.state)
                log.info(
                    "resuming: %d of %d batches already folded",
                    checkpoint.done.sum(),
                    checkpoint.done.size,
                )
                return checkpoint.seed, checkpoint.done, checkpoint.elapsed_s
            if opts.output.exists():
                raise InputError(
                    f"--resume: {opts.output} is already complete (no checkpoint beside it); "
                    "leave out --resume to run again and replace it"
                )
            log.warning(
                "--resume: no checkpoint beside %s, starting from the beginning", opts.output
            )
        seed = opts.seed if opts.seed is not None else secrets.randbelow(SEED_LIMIT - 2**40)
        return seed, np.zeros(0, dtype=bool), 0.0

    def _simulate_and_fold(self, job: SimulationJob, batches, aggregator: Aggregator) -> None:
        from noisefs.arena import Arena

        opts = self.options
        folded = int(aggregator.count[-1]) if aggregator.count.size else 0
        progress = Progress(total=opts.trajectories, initial=folded, enabled=self.show_progress)
        self.timing["fold_s"] = 0.0
        last_checkpoint = time.monotonic()
        checkpoint_interval = opts.checkpoint_interval_s
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
            self.arena_settings = self.arena_start = arena.stats()
            executor = self._executor(arena, job)
            # pending batch indices, ascending: submitted in order, so every batch below one
            # in flight has been submitted too
            pending = np.flatnonzero(~self.done)
            next_pending = 0
            in_flight: set = set()
            stopped = False
            interrupts = DeferredInterrupts()
            try:
                with interrupts:
                    while next_pending < pending.size or in_flight:
                        interrupts.check()  # here every batch is folded whole or not at all
                        while next_pending < pending.size and len(in_flight) < executor.slots:
                            batch = batches[int(pending[next_pending])]
                            in_flight.add(_submit(executor, batch, interrupts))
                            next_pending += 1
                        finished, in_flight = wait(
                            in_flight, timeout=0.25, return_when=FIRST_COMPLETED
                        )
                        for future in finished:
                            batch_done = _batch_result(future, interrupts)
                            self._fold(arena, executor, batch_done, aggregator)
                            progress.advance(batch_done.size, self._sample(arena))
                        if (
                            opts.target_tol is not None
                            and not stopped
                            and self._tolerance_reached(aggregator)
                        ):
                            # stop, but keep the folded set contiguous (0 .. highest folded):
                            # batches below it that a resume or out-of-order workers left
                            # out still run (all batches below one submitted were submitted)
                            stopped = True
                            highest = int(np.flatnonzero(self.done).max())
                            rest = pending[next_pending:]
                            pending, next_pending = rest[rest < highest], 0
                        if (
                            opts.output is not None
                            and time.monotonic() - last_checkpoint > checkpoint_interval
                        ):
                            write_started = time.perf_counter()
                            self._checkpoint(aggregator, self._elapsed())
                            # never spend more than ~10 % of the run writing checkpoints
                            checkpoint_interval = max(
                                opts.checkpoint_interval_s,
                                10 * (time.perf_counter() - write_started),
                            )
                            last_checkpoint = time.monotonic()
            except BaseException:
                for future in in_flight:
                    future.cancel()
                # batches already running finish; then nothing of this run may stay behind.
                # A second Ctrl-C waits for that: it would otherwise strand their snapshots.
                with DeferredInterrupts():
                    executor.shutdown()
                    self._release_run(arena, job.run_name)
                raise
            finally:
                executor.shutdown()
                progress.close()
                self._sample(arena)
            self._release_run(arena, job.run_name)  # whatever a failed release left

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _executor(self, arena, job: SimulationJob):
        from noisefs.sim.runner import LocalExecutor, ProcessExecutor

        opts = self.options
        if opts.scheduler:
            from noisefs.distributed import DaskExecutor

            return DaskExecutor(arena, job, opts.scheduler)
        if opts.workers > 1:
            return ProcessExecutor(arena, job, opts.workers)
        return LocalExecutor(arena, job)

    def _fold(self, arena, executor, batch_done: BatchDone, aggregator: Aggregator) -> None:
        """Fold one batch whole: every snapshot is fetched and verified before the first
        sum changes, and the batch is marked done with the last one, so a checkpoint never
        disagrees with the sums whatever fails afterwards."""
        started = time.perf_counter()
        if executor.needs_adopt:
            arena.adopt(list(batch_done.keys))
        fold = (
            aggregator.fold_densities if self.options.store == "dense" else aggregator.fold_states
        )
        views = [arena.get(key) for key in batch_done.keys]
        self._folding = True
        for step, view in enumerate(views):
            fold(step, view)
        self.done[batch_done.index] = True
        self._folding = False
        del views, view  # drop the mappings before the snapshots' pages are recycled
        for name, seconds in (
            ("simulate_s", batch_done.simulate_s),
            ("store_s", batch_done.store_s),
        ):
            self.timing[name] = self.timing.get(name, 0.0) + seconds
        for key in batch_done.keys:
            try:
                arena.release(key)
            except Exception:  # noqa: BLE001 - folded already; a stranded snapshot is gc's
                log.warning("could not release folded snapshot %s", key, exc_info=True)
        self.timing["fold_s"] += time.perf_counter() - started

    def _release_run(self, arena, run_name: str) -> None:
        """After an error or interrupt: release every snapshot this run left in the arena
        (batches that finished after the stop included)."""
        for key in arena.keys(run=run_name):
            try:
                arena.release(key)
            except KeyError:
                pass
            except Exception:  # noqa: BLE001 - best effort; the error being raised matters more
                log.debug("could not release %s", key, exc_info=True)

    def _sample(self, arena) -> dict:
        """Track this run's arena figures: peaks (exact when the arena's own peak moved during
        the run, else the largest sample) and what the run spilled (cumulative counters)."""
        stats = arena.stats()
        start = self.arena_start
        peaks = self.arena_peaks
        for name, used in (("peak_bytes", "bytes_used"), ("peak_files", "files_used")):
            peaks[name] = max(peaks[name], int(stats[used]))
            if stats[name] > start[name]:
                peaks[name] = max(peaks[name], int(stats[name]))
        peaks["spilled_bytes"] = int(stats["spilled_total_bytes"] - start["spilled_total_bytes"])
        peaks["spilled_files"] = int(stats["spilled_total_files"] - start["spilled_total_files"])
        return stats

    def _target_reached(self, aggregator: Aggregator) -> bool | None:
        """Whether ``--target-tol`` was met (None without one); warns when it was not."""
        if self.options.target_tol is None:
            return None
        reached = self._within_tol(aggregator)
        if not reached:
            log.warning(
                "--target-tol %g not reached: largest <Z> standard error %.3g after %d trajectories; "
                "raise --trajectories",
                self.options.target_tol,
                float(np.max(aggregator.z_stderr())),
                int(aggregator.count[-1]),
            )
        return reached

    def _tolerance_reached(self, aggregator: Aggregator) -> bool:
        """Whether to stop early: enough trajectories for the errors to mean something."""
        return aggregator.count[-1] >= MIN_TRAJECTORIES_FOR_TOL and self._within_tol(aggregator)

    def _within_tol(self, aggregator: Aggregator) -> bool:
        return bool(np.all(aggregator.z_stderr() <= self.options.target_tol))

    def _checkpoint(self, aggregator: Aggregator, elapsed_s: float) -> None:
        if self.options.output is None or not hasattr(self, "done") or not self.done.any():
            return
        path = checkpoint_path(self.options.output)
        checkpoint = Checkpoint(
            self._fingerprint(),
            self.seed,
            self.batch_size,
            self.done.copy(),
            aggregator.state(),
            elapsed_s,
        )
        with writing(path, "checkpoint"):
            save_checkpoint(path, checkpoint)

    # -- the result ----------------------------------------------------------------------

    def _result(self, aggregator: Aggregator) -> Result:
        opts = self.options
        trajectories = int(aggregator.count[-1])
        stats = self.arena_settings
        meta = {
            "versions": _library_versions(),
            "circuit": str(opts.circuit),
            "circuit_sha256": self.prepared.source_sha256,
            "executed_qasm": self.executed_qasm,
            "num_qubits": self.num_qubits,
            "noise": self.noise.to_meta(),
            "seed": self.seed,
            "seed_transpiler": opts.seed_transpiler,
            "optimize": opts.optimize,
            "trajectories": trajectories,
            "trajectories_requested": opts.trajectories,
            "target_tol": opts.target_tol,
            "target_reached": self._target_reached(aggregator),
            "batch": self.batch_size,
            "snapshots": opts.snapshots,
            "store": opts.store,
            "workers": opts.workers,
            "density": self.density,
            "keep_qubits": list(opts.keep_qubits) if opts.keep_qubits else None,
            "arena": {
                "root": str(stats.get("root", opts.arena_root or "")),
                "quota_bytes": int(stats.get("quota_bytes", 0)),
                "max_files": int(stats.get("max_files", 0)),
                **self.arena_peaks,
            },
        }
        return Result(
            rho=aggregator.rho(),
            probabilities=aggregator.probabilities(),
            steps=np.asarray(self.steps, dtype=np.int64),
            trajectories=trajectories,
            z_mean=aggregator.z_mean(),
            z_stderr=aggregator.z_stderr(),
            meta=meta,
        )


def _library_versions() -> dict[str, str]:
    import qiskit
    import qiskit_aer

    return {
        "noisefs": __version__,
        "qiskit": qiskit.__version__,
        "qiskit-aer": qiskit_aer.__version__,
    }


@contextlib.contextmanager
def _worker_failures(interrupts: DeferredInterrupts):
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


def _submit(executor, batch, interrupts: DeferredInterrupts):
    with _worker_failures(interrupts):
        return executor.submit(batch)


def _batch_result(future, interrupts: DeferredInterrupts) -> BatchDone:
    with _worker_failures(interrupts):
        return future.result()


def _safe_name(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).lstrip(".")
    return (cleaned or "run")[:64]


def describe(result: Result) -> dict:
    """The one-object JSON summary that ``noisefs run --json`` prints."""
    meta = result.meta
    return {
        "output": str(result.path) if result.path else None,
        "circuit": meta["circuit"],
        "num_qubits": meta["num_qubits"],
        "trajectories": result.trajectories,
        "seed": meta["seed"],
        "snapshots": len(result.steps),
        "steps": [int(s) for s in result.steps],
        "z_mean_final": [float(z) for z in result.z_mean[-1]],
        "z_stderr_max": float(np.max(result.z_stderr)) if result.z_stderr.size else 0.0,
        "purity_final": float(result.purity()[-1]) if result.rho is not None else None,
        "target_tol": meta.get("target_tol"),
        "target_reached": meta.get("target_reached"),
        "arena": meta["arena"],
        "timing": meta.get("timing", {}),
    }


__all__ = ["TrajectoryRun", "describe"]
