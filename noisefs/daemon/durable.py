"""Durability of an inbox's running averages: checkpoints, recovery, results.

:class:`CheckpointStore` owns the running averages of one inbox's runs and their
checkpoints. A checkpoint holds a run's sums and the names of the claimed files folded
since the previous one; those files are unlinked only once it is durable
(:class:`CheckpointWriter` writes it in the background, so ingest never waits for an
fsync). On start, claimed files a checkpoint names are unlinked and the others returned to
be folded: every file counts exactly once across a kill -9. ``DONE`` (or shutdown) writes
the run's result atomically.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from noisefs import faults
from noisefs.arena.paths import RUN_NAME
from noisefs.daemon.candidates import Key
from noisefs.daemon.dirs import STEP_NAME
from noisefs.daemon.runs import RunAverage, write_checkpoint
from noisefs.errors import NoiseFSError

log = logging.getLogger("noisefs.daemon")

# what np.load and the header parse raise on a damaged checkpoint (a truncated or
# overwritten zip: BadZipFile; a damaged member: zlib.error, EOFError; a bad header: ...;
# a flipped bit in a zip header: NotImplementedError for an unknown compression method or
# version, RuntimeError for the "encrypted" flag; numpy's header parser: TokenError,
# SyntaxError)
CORRUPT = (
    OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error,
    NotImplementedError, RuntimeError, tokenize.TokenError, SyntaxError, MemoryError,
)  # fmt: skip
FINISHED_KEPT = 100  # finished runs the status file lists


class CheckpointWriter:
    """A background thread that writes checkpoints, then unlinks the claimed files each
    one covers; the ingest loop never waits for an fsync. Results come back on ``done``
    as ``(run, names, seconds, error)``; the caller forgets names only from there."""

    def __init__(self, claimed_fd: int) -> None:
        self._fd = claimed_fd
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.in_flight: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="noisefs-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, run: str, path: Path, arrays: dict, header: dict, names: list[str]) -> None:
        """Write a checkpoint of ``run`` in the background, then unlink ``names``."""
        self.in_flight.add(run)
        self._jobs.put((run, path, arrays, header, names))

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            run, path, arrays, header, names = job
            started = time.perf_counter()
            try:
                write_checkpoint(path, arrays, header)
                faults.kill_at("daemon.checkpointed")
                for name in names:
                    try:
                        os.unlink(name, dir_fd=self._fd)
                    except FileNotFoundError:
                        pass
                self.done.put((run, names, time.perf_counter() - started, None))
            except Exception as exc:  # noqa: BLE001 - reported to the loop, retried there
                self.done.put((run, [], time.perf_counter() - started, exc))

    def wait_idle(self, handle: Callable[[tuple], None]) -> None:
        """Block until nothing is in flight, passing each result to ``handle``."""
        while self.in_flight:
            handle(self.done.get())

    def stop(self) -> None:
        """End the thread once the jobs submitted so far are done (idempotent)."""
        self._jobs.put(None)
        self._thread.join(timeout=30)


class CheckpointStore:
    """The running averages of one inbox's runs, their checkpoints and results.

    It writes checkpoints under ``state_dir`` (through its own :class:`CheckpointWriter`
    thread), unlinks the claimed files in ``claimed_fd`` that a durable checkpoint counts,
    writes results to ``results_dir`` and counts them in ``counters``. It never looks at
    the inbox itself.
    """

    def __init__(
        self, root: Path, state_dir: Path, claimed_fd: int, results_dir: Path, counters: dict
    ) -> None:
        self.root = root
        self._state_dir = state_dir
        self._claimed_fd = claimed_fd
        self._results_dir = results_dir
        self._counters = counters
        self.runs: dict[str, RunAverage] = {}
        self.finished: dict[str, dict] = {}  # the last runs whose result DONE wrote
        self.pending_limit_bytes = 128 << 20  # set from the arena's bounds by the daemon
        self.pending_limit_files = 2048
        # claimed files hold inodes and bytes no lease reserved: at most this many while
        # the arena has no room for more (None: no cap; set by the daemon's police)
        self._claim_cap: tuple[int, int] | None = None
        self._last_ckpt = time.monotonic()
        self._ckpt_cost = 0.0
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writer = CheckpointWriter(claimed_fd)

    def average(self, run: str) -> RunAverage:
        """The running average of ``run``, begun when there is none."""
        average = self.runs.get(run)
        if average is None:
            path = self._state_dir / f"{run}.ckpt.npz"
            average = self.runs[run] = RunAverage(run, path, self._results_dir)
        return average

    def set_results_dir(self, results_dir: Path) -> None:
        """Write results to ``results_dir`` from now on, the runs in progress included."""
        self._results_dir = results_dir
        for average in self.runs.values():
            average.results_dir = results_dir

    # -- startup -----------------------------------------------------------------------

    def recover(self) -> list[Key]:
        """Load checkpoints; unlink claimed files they count; the others, to be folded."""
        for temp in self._state_dir.glob(".*.ckpt.npz.*.tmp"):  # a write killed midway
            temp.unlink(missing_ok=True)
        for path in sorted(self._state_dir.glob("*.ckpt.npz")):
            try:
                run = RunAverage.load(path, self._results_dir)
            except CORRUPT as exc:
                bad = path.with_suffix(".bad")
                if bad.exists():  # an earlier one is kept too
                    bad = path.with_suffix(f".{int(time.time())}.bad")
                log.error(
                    "checkpoint %s unreadable (%s: %s); set aside as %s, its run starts anew",
                    path, type(exc).__name__, exc, bad,
                )  # fmt: skip
                os.replace(path, bad)
                continue
            self.runs[run.run] = run
        counted = {name for run in self.runs.values() for name in run.pending}
        to_fold: list[Key] = []
        for name in os.listdir(self._claimed_fd):
            parts = name.split("~", 3)
            if name in counted:
                os.unlink(name, dir_fd=self._claimed_fd)
            elif len(parts) == 4 and RUN_NAME.fullmatch(parts[0]) and STEP_NAME.fullmatch(parts[1]):
                to_fold.append((parts[0], int(parts[1]), name, True))
            else:
                log.warning("unknown entry %s in %s/daemon/claimed left alone", name, self.root)
        for run in self.runs.values():
            run.forget(list(counted))
        if self.runs or to_fold:
            log.info(
                "%s: resumed %d runs from checkpoints, %d claimed files to fold",
                self.root,
                len(self.runs),
                len(to_fold),
            )
        return to_fold

    # -- checkpoints and results -------------------------------------------------------

    def _checkpointed(self, result: tuple) -> None:
        run, names, seconds, error = result
        self._writer.in_flight.discard(run)
        self._ckpt_cost = seconds
        average = self.runs.get(run)
        if error is not None:
            log.error("run %s: checkpoint failed (%s); retried", run, error)
            if average is not None:
                average.dirty = True
        elif average is not None:
            average.forget(names)

    def checkpoint(self, interval_s: float, force: bool = False) -> None:
        """Checkpoint dirty runs (every ``interval_s`` in the background, or now and
        synchronously with ``force``); their claimed files are freed once it is durable."""
        while True:
            try:
                self._checkpointed(self._writer.done.get_nowait())
            except queue.Empty:
                break
        if force:
            self._writer.wait_idle(self._checkpointed)
            for average in list(self.runs.values()):
                if average.dirty or average.pending:
                    self._save_now(average)
            return
        now = time.monotonic()
        # claimed files hold arena space and inodes until their checkpoint: bound them too
        waiting = [r for r in self.runs.values() if r.run not in self._writer.in_flight]
        many = (
            sum(len(r.pending) for r in waiting) >= self.pending_limit_files
            or sum(r.pending_bytes for r in waiting) >= self.pending_limit_bytes
            or (self._at_room_cap(*self.held()) and any(r.pending for r in waiting))
        )
        # a checkpoint of large sums (16 MiB per step at 10 qubits) costs: at most ~5 %
        interval_s = max(interval_s, 20 * self._ckpt_cost)
        if not many and now - self._last_ckpt < interval_s:
            return
        self._last_ckpt = now
        for average in list(self.runs.values()):
            if (average.dirty or average.pending) and average.run not in self._writer.in_flight:
                average.flush()
                arrays, header, names = average.snapshot()
                self._writer.submit(average.run, average.ckpt_path, arrays, header, names)

    def holding_too_many(self) -> bool:
        """Whether the claimed files not yet freed by a checkpoint (those of a checkpoint
        being written included) reach twice the pending limits: then no file is claimed
        until the checkpoint frees them (they wait in the inbox, where a writer that
        waits for its files to be taken sees them)."""
        files, nbytes = self.held()
        return (
            files >= 2 * self.pending_limit_files
            or nbytes >= 2 * self.pending_limit_bytes
            or self._at_room_cap(files, nbytes)
        )

    def set_pending_limit(self, nbytes: int, nfiles: int) -> None:
        """Bound the claimed files awaiting their checkpoint (all runs together)."""
        self.pending_limit_bytes, self.pending_limit_files = nbytes, nfiles

    def held(self) -> tuple[int, int]:
        """Claimed files (and their bytes) not yet freed by a durable checkpoint."""
        runs = self.runs.values()
        return sum(len(r.pending) for r in runs), sum(r.pending_bytes for r in runs)

    def set_claim_room(self, room_files: int, room_bytes: int) -> None:
        """The arena has room for ``room_files`` more inodes and ``room_bytes`` more bytes
        (after every lease, however much of it is used): claim no more than that beyond
        what is held now, and at least one file at a time, so that the foreign files
        already taken stay within the bounds that the runs' leases leave free."""
        files, nbytes = self.held()
        self._claim_cap = (max(1, files + room_files), max(1, nbytes + room_bytes))

    def _at_room_cap(self, files: int, nbytes: int) -> bool:
        """Whether ``files`` claimed files of ``nbytes`` reach the room cap
        (:meth:`set_claim_room`; its byte cap binds once one file is held)."""
        cap = self._claim_cap
        return cap is not None and (files >= cap[0] or (files > 0 and nbytes >= cap[1]))

    def _save_now(self, average: RunAverage) -> None:
        names = average.save()
        faults.kill_at("daemon.checkpointed")
        for name in names:
            try:
                os.unlink(name, dir_fd=self._claimed_fd)
            except FileNotFoundError:
                pass
        average.forget(names)

    def finish(self, run: str) -> None:
        """Write the complete result of ``run`` (when anything was folded), then forget
        the run and its checkpoint; ``OSError``/``NoiseFSError`` when the result cannot be
        written (everything is kept)."""
        self._writer.wait_idle(self._checkpointed)  # no older checkpoint lands after ours
        average = self.runs.get(run)
        if average is None:
            log.info("run %s: DONE with nothing folded; no result written", run)
            return
        average.flush()
        self._save_now(average)
        path = average.write_result(str(self.root), complete=True)
        average.drop_checkpoint()
        del self.runs[run]
        self._counters["results_written"] += 1
        self.finished[run] = {"ingested": average.ingested, "result": str(path), "done": True}
        while len(self.finished) > FINISHED_KEPT:
            del self.finished[next(iter(self.finished))]
        log.info("run %s: %d files folded, result %s", run, average.ingested, path)

    def shutdown(self) -> None:
        """Checkpoint everything and write the averages so far (not marked complete)."""
        try:
            self.checkpoint(0, force=True)
        except (OSError, NoiseFSError) as exc:
            log.error("%s: final checkpoint failed (%s); claimed files kept", self.root, exc)
        for average in self.runs.values():
            if average.steps:
                try:
                    path = average.write_result(str(self.root), complete=False)
                except (OSError, NoiseFSError) as exc:
                    log.error("run %s: result not written (%s)", average.run, exc)
                    continue
                log.info(
                    "run %s: %d files folded so far, written to %s",
                    average.run,
                    average.ingested,
                    path,
                )

    def close(self) -> None:
        """Stop the checkpoint thread (idempotent)."""
        self._writer.stop()
