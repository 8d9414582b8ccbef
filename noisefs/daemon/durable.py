"""Durability of an inbox's running averages: checkpoints, recovery, results.

Mixed into :class:`~noisefs.daemon.ingest.Inbox`. A checkpoint holds a run's sums and the
names of the claimed files folded since the previous one; those files are unlinked only
once it is durable (:class:`CheckpointWriter` writes it in the background, so ingest
never waits for an fsync). On start, claimed files a checkpoint names are unlinked and the
others folded: every file counts exactly once across a kill -9. ``DONE`` (or shutdown)
writes the run's result atomically.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zipfile
import zlib
from pathlib import Path

from noisefs.arena.paths import RUN_NAME
from noisefs.daemon.runs import RunAverage, write_checkpoint
from noisefs.daemon.scan import STEP_NAME, opendir
from noisefs.errors import NoiseFSError

log = logging.getLogger("noisefs.daemon")

# what np.load and the header parse raise on a damaged checkpoint (a truncated or
# overwritten zip: BadZipFile; a damaged member: zlib.error, EOFError; a bad header: ...)
CORRUPT = (
    OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error,
)  # fmt: skip
FAULT_ENV = "NOISEFS_DAEMON_FAULT"  # test hook: "<point>:<n>" SIGKILLs the daemon
_FAULT_SPEC = os.environ.get(FAULT_ENV)


def fault(point: str, counter: dict) -> None:
    spec = _FAULT_SPEC
    if not spec or not spec.startswith(point + ":"):
        return
    counter[point] = counter.get(point, 0) + 1
    if counter[point] >= int(spec.split(":", 1)[1]):
        os.kill(os.getpid(), 9)


CLAIM_HOOK_ENV = "NOISEFS_DAEMON_CLAIM_HOOK"  # test hook: a path, see claim_hook
_CLAIM_HOOK = os.environ.get(CLAIM_HOOK_ENV)


def claim_hook() -> None:
    """Test hook between a file's probe and its claim: create the marker file named by
    ``NOISEFS_DAEMON_CLAIM_HOOK`` and wait (at most 10 s) until the test removes it."""
    if not _CLAIM_HOOK:
        return
    marker = Path(_CLAIM_HOOK)
    marker.touch()
    deadline = time.monotonic() + 10.0
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class CheckpointWriter:
    """A background thread that writes checkpoints, then unlinks the claimed files each
    one covers; the ingest loop never waits for an fsync. Results come back on ``done``
    as ``(run, names, seconds, error)``; the caller forgets names only from there."""

    def __init__(self, claimed_fd: int, after_write=None) -> None:
        self._fd = claimed_fd
        self._after_write = after_write
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.in_flight: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="noisefs-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, run: str, path: Path, arrays: dict, header: dict, names: list[str]) -> None:
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
                if self._after_write is not None:
                    self._after_write()
                for name in names:
                    try:
                        os.unlink(name, dir_fd=self._fd)
                    except FileNotFoundError:
                        pass
                self.done.put((run, names, time.perf_counter() - started, None))
            except Exception as exc:  # noqa: BLE001 - reported to the loop, retried there
                self.done.put((run, [], time.perf_counter() - started, exc))

    def wait_idle(self, handle) -> None:
        """Block until nothing is in flight, passing each result to ``handle``."""
        while self.in_flight:
            handle(self.done.get())

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)


class Durability:
    """Checkpoints and results; expects the attributes :class:`Inbox` sets up."""

    # -- startup -----------------------------------------------------------------------

    def _ckpt_path(self, run: str) -> Path:
        return self.state_dir / f"{run}.ckpt.npz"

    def _recover(self) -> None:
        """Load checkpoints; unlink claimed files they count, queue the others to fold."""
        for temp in self.state_dir.glob(".*.ckpt.npz.*.tmp"):  # a write killed midway
            temp.unlink(missing_ok=True)
        for path in sorted(self.state_dir.glob("*.ckpt.npz")):
            try:
                run = RunAverage.load(path, self.cfg.results_dir)
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
        for name in os.listdir(self.claimed_fd):
            parts = name.split("~", 3)
            if name in counted:
                os.unlink(name, dir_fd=self.claimed_fd)
            elif len(parts) == 4 and RUN_NAME.fullmatch(parts[0]) and STEP_NAME.fullmatch(parts[1]):
                self.todo[(parts[0], int(parts[1]), name, True)] = time.monotonic()
            else:
                log.warning("unknown entry %s in %s/daemon/claimed left alone", name, self.root)
        for run in self.runs.values():
            run.forget(list(counted))
        if self.runs or self.todo:
            log.info(
                "%s: resumed %d runs from checkpoints, %d claimed files to fold",
                self.root,
                len(self.runs),
                len(self.todo),
            )

    # -- checkpoints and results -------------------------------------------------------

    def _checkpointed(self, result) -> None:
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
        # claimed files hold arena space until their checkpoint: bound them too
        many = any(
            len(r.pending) >= 2048 or r.pending_bytes >= self.pending_limit_bytes
            for r in self.runs.values()
            if r.run not in self._writer.in_flight
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

    def _save_now(self, average: RunAverage) -> None:
        names = average.save()
        fault("checkpointed", self._faults)
        for name in names:
            try:
                os.unlink(name, dir_fd=self.claimed_fd)
            except FileNotFoundError:
                pass
        average.forget(names)

    def finish_ready_runs(self, force: bool = False) -> None:
        """Write the result of every run whose DONE appeared, once its files are taken
        (or its grace time is over)."""
        for run, deadline in list(self.done.items()):
            if self._retry_at.get(run, 0.0) > time.monotonic():
                continue
            self.scan(run)  # synchronously: every file already there is taken first
            busy = any(k[0] == run for k in self.todo) or any(k[0] == run for k in self.waiting)
            if busy and not force and time.monotonic() < deadline:
                continue
            if busy:
                log.warning("run %s: DONE seen but files still arriving; they start anew", run)
            try:
                self._finish(run)
            except (OSError, NoiseFSError) as exc:  # results dir full or gone: keep all
                log.error(
                    "run %s: result not written (%s); kept, retried in %g s",
                    run,
                    exc,
                    self.done_grace_s,
                )
                self._retry_at[run] = time.monotonic() + self.done_grace_s
                continue
            self._retry_at.pop(run, None)
            del self.done[run]

    def _finish(self, run: str) -> None:
        self._writer.wait_idle(self._checkpointed)  # no older checkpoint lands after ours
        average = self.runs.get(run)
        if average is not None:
            average.flush()
            self._save_now(average)
            path = average.write_result(str(self.root), complete=True)
            average.drop_checkpoint()
            del self.runs[run]
            self.c["results_written"] += 1
            self.finished[run] = {"ingested": average.ingested, "result": str(path), "done": True}
            while len(self.finished) > 100:
                del self.finished[next(iter(self.finished))]
            log.info("run %s: %d files folded, result %s", run, average.ingested, path)
        else:
            log.info("run %s: DONE with nothing folded; no result written", run)
        run_fd = opendir(run, self.inbox_fd)
        if run_fd is None:
            return
        try:
            try:
                os.unlink("DONE", dir_fd=run_fd)
            except (FileNotFoundError, IsADirectoryError):
                pass
            for entry in os.listdir(run_fd):
                if STEP_NAME.fullmatch(entry):
                    try:
                        os.rmdir(entry, dir_fd=run_fd)  # only if empty
                    except OSError:
                        pass
        finally:
            os.close(run_fd)
        try:
            os.rmdir(run, dir_fd=self.inbox_fd)
        except OSError:
            pass

    def shutdown(self) -> None:
        """Checkpoint everything and write the averages so far (not marked complete); the
        directory fds stay open until :meth:`close`."""
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
