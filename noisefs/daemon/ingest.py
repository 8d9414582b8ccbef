"""Ingest of foreign ``.npy`` snapshots written into ``<arena>/inbox/<run>/<step>/``.

A candidate (from an event or a scan) is probed (:mod:`noisefs.daemon.npyfile`), claimed
by renaming it into ``<arena>/daemon/claimed/`` (same filesystem, daemon-only), checked to
be the inode that was probed, read, folded into the run's running average, and unlinked
once a checkpoint covering it is durable (:mod:`noisefs.daemon.durable`). Rejected entries
are renamed into ``<arena>/inbox/<run>/rejected/`` (a symlink moves itself; its target is
never touched) with a log line naming the reason: every bad input ends there, whatever
numpy raised about it, and never ends the daemon's loop. Every operation is relative to a
directory fd opened with ``O_NOFOLLOW``: nothing outside the arena is opened or deleted.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from noisefs import faults
from noisefs.daemon.candidates import Candidates, Key, Waiting
from noisefs.daemon.checks import array_problem, shape_problem
from noisefs.daemon.config import ArenaConfig, DaemonConfig
from noisefs.daemon.dirs import InboxDirs, opendir
from noisefs.daemon.durable import CheckpointStore
from noisefs.daemon.npyfile import Probe, Reader, probe
from noisefs.daemon.runs import RunAverage
from noisefs.daemon.scan import Scanner
from noisefs.errors import NoiseFSError

log = logging.getLogger("noisefs.daemon")


class Inbox:
    """The inbox of one arena and the running averages of its runs.

    Its parts: :class:`~noisefs.daemon.dirs.InboxDirs` (the directory descriptors),
    :class:`~noisefs.daemon.candidates.Candidates` (what to take),
    :class:`~noisefs.daemon.scan.Scanner` (finding files, measuring the inbox) and
    :class:`~noisefs.daemon.durable.CheckpointStore` (averages, checkpoints, results).
    The inbox itself takes files (probe, claim, read, check, fold), rejects bad ones and
    finishes runs whose ``DONE`` appeared. ``counters`` are the arena's (status, metrics).
    """

    def __init__(
        self,
        root_fd: int,
        root: Path,
        cfg: ArenaConfig,
        state_dir: Path,
        counters: dict,
        daemon_cfg: DaemonConfig,
    ) -> None:
        self.root = root
        self._counters = counters
        self._settle_s = daemon_cfg.settle_s
        self._done_grace_s = daemon_cfg.done_grace_s
        self._done: dict[str, float] = {}  # runs whose DONE appeared -> grace deadline
        self._retry_at: dict[str, float] = {}  # runs whose result could not be written
        self._errors: set[Key] = set()
        self._reader = Reader()
        self._candidates = Candidates()
        self._dirs = InboxDirs(root_fd, root)
        store = trace = None
        try:
            store = CheckpointStore(
                root, state_dir, self._dirs.claimed_fd, cfg.results_dir, counters
            )
            trace_path = faults.setting("daemon.trace")
            trace = open(trace_path, "a", buffering=1 << 16) if trace_path else None  # noqa: SIM115
            for key in store.recover():
                self._candidates.queue(key)
        except BaseException:  # nothing opened so far is left behind
            for part in (trace, store):
                if part is not None:
                    part.close()
            self._dirs.close()
            raise
        self._store = store
        self._trace = trace
        self._scanner = Scanner(
            root, self._dirs, self._candidates, counters, self._reject, self._note_done
        )

    # -- what the daemon reads and sets ------------------------------------------------

    @property
    def todo(self) -> dict[Key, float]:
        """The queued candidates (read-only for callers)."""
        return self._candidates.queued

    @property
    def waiting(self) -> dict[Key, Waiting]:
        """The candidates not ready yet (read-only for callers)."""
        return self._candidates.waiting

    @property
    def runs(self) -> dict[str, RunAverage]:
        """The running averages of the runs in progress (read-only for callers)."""
        return self._store.runs

    @property
    def finished(self) -> dict[str, dict]:
        """The last runs whose result ``DONE`` wrote."""
        return self._store.finished

    @property
    def usage(self) -> tuple[int, int]:
        """Bytes and inodes under the inbox at the last full scan."""
        return self._scanner.usage

    @property
    def scan_cost(self) -> float:
        """Seconds the last full scan took."""
        return self._scanner.scan_cost

    @property
    def scan_pending(self) -> bool:
        """Whether events came since the last full scan (the police tick then rescans)."""
        return self._scanner.activity

    @property
    def daemon_fd(self) -> int:
        """The descriptor of ``<root>/daemon`` (the status file's directory)."""
        return self._dirs.daemon_fd

    def set_pending_limit(self, nbytes: int, nfiles: int) -> None:
        """Bound the claimed files awaiting their checkpoint (all runs): bytes, files."""
        self._store.set_pending_limit(nbytes, nfiles)

    def set_claim_room(self, room_files: int, room_bytes: int) -> None:
        """The arena's room beyond every lease (see :meth:`CheckpointStore.set_claim_room`)."""
        self._store.set_claim_room(room_files, room_bytes)

    def reconfigure(self, cfg: ArenaConfig, daemon_cfg: DaemonConfig) -> None:
        """Apply a reloaded configuration: results directory (runs in progress included),
        settle and grace times."""
        self._store.set_results_dir(cfg.results_dir)
        self._settle_s = daemon_cfg.settle_s
        self._done_grace_s = daemon_cfg.done_grace_s

    # -- discovery (the scanner's) -----------------------------------------------------

    def hint(self, path: str, kind: str) -> None:
        """An event about ``path`` inside this inbox (see :meth:`Scanner.hint`)."""
        self._scanner.hint(path, kind)

    def scan(self, only_run: str | None = None, count_missed: bool = False) -> None:
        """List the inbox (or one run), queue what is there, measure the foreign usage."""
        self._scanner.scan(only_run, count_missed)

    def refresh_usage(self, now: float) -> None:
        """Rescan when events came since the last full scan and one is cheap enough: inbox
        files count against the arena from the moment they exist."""
        if self._scanner.usage_stale(now):
            self._scanner.scan()

    def take_reopened(self) -> bool:
        """Whether the inbox was replaced since the last call (the watch must restart)."""
        return self._scanner.take_reopened()

    def _note_done(self, run: str) -> None:
        if run not in self._done:
            self._done[run] = time.monotonic() + self._done_grace_s

    # -- taking files ------------------------------------------------------------------

    def process(self, budget_s: float = 0.2) -> int:
        """Take queued candidates for up to ``budget_s``; retry waiting ones; return how
        many were handled."""
        deadline = time.monotonic() + budget_s
        handled = 0
        try:
            self._candidates.requeue_due()
            while self._candidates.queued and time.monotonic() < deadline:
                if self._store.holding_too_many():
                    break  # claimed files wait for their checkpoint: the rest stays queued
                key = self._candidates.pop()
                try:
                    self._take(key)
                except OSError as exc:  # EXDEV (a mount inside the inbox), EACCES, EIO ...
                    self._failed(key, exc)
                except Exception as exc:  # noqa: BLE001 - one bad file never ends the loop
                    self._broken(key, exc)
                handled += 1
            for run in self._store.runs.values():
                run.flush()
        finally:
            self._dirs.forget_cached()
            if self._trace:
                self._trace.flush()
        return handled

    def _take(self, key: Key) -> None:
        run, step, name, claimed = key
        dir_fd = self._dirs.claimed_fd if claimed else self._dirs.step_dir(run, step)
        if dir_fd is None:
            self._candidates.waiting.pop(key, None)
            return
        p = probe(dir_fd, name)
        if p.verdict == "gone":
            self._candidates.waiting.pop(key, None)
        elif p.verdict == "reject":
            self._candidates.waiting.pop(key, None)
            self._reject(run, dir_fd, name, step, p.reason)
        elif p.verdict == "wait":
            self._wait(key, p, dir_fd)
        else:
            self._candidates.waiting.pop(key, None)
            known = self._store.runs.get(run)
            reason = shape_problem(p.shape, known.num_qubits if known is not None else None)
            if reason:
                p.close()
                self._reject(run, dir_fd, name, step, reason)
                return
            if not claimed:
                claimed_name = self._claim(run, step, name, dir_fd, p)
                if claimed_name is None:
                    return
                name = claimed_name
            try:
                self._fold(run, step, name, p)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - it lies in claimed/: rejected there
                self._broken((run, step, name, True), exc)

    def _claim(self, run: str, step: int, name: str, dir_fd: int, p: Probe) -> str | None:
        """Rename a probed file into ``claimed/``; its new name, or None when it is not
        (or no longer) the file that was probed (``p`` is then closed)."""
        target = f"{run}~{step}~{secrets.token_hex(6)}~{name}"
        faults.pause_at("daemon.claim-paused")
        try:
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=self._dirs.claimed_fd)
        except FileNotFoundError:
            p.close()
            return None
        faults.kill_at("daemon.claimed")
        st = os.stat(target, dir_fd=self._dirs.claimed_fd, follow_symlinks=False)
        assert p.st is not None
        if (st.st_dev, st.st_ino) != (p.st.st_dev, p.st.st_ino):
            # another file was renamed over the name after the probe: what was claimed is
            # that one, never probed; probe it afresh where it is now
            p.close()
            self._candidates.queue((run, step, target, True))
            return None
        if st.st_nlink != 1:  # a hard link made after the probe
            p.close()
            self._reject(run, self._dirs.claimed_fd, target, step, "hard_link")
            return None
        return target

    def _failed(self, key: Key, exc: OSError) -> None:
        """A file that cannot be taken for a system reason: logged once, retried slowly,
        never deleted."""
        if key not in self._errors:
            self._errors.add(key)
            log.warning("%s/inbox/%s/%s/%s: %s (left in place, retried)", self.root, *key[:3], exc)
        now = time.monotonic()
        self._candidates.waiting[key] = Waiting(None, None, now - 20.0, "error", now)

    def _broken(self, key: Key, exc: Exception) -> None:
        """Taking a file raised something unforeseen: it is rejected (``error``) where it
        still lies, with the traceback in the log, and the loop goes on."""
        run, step, name, claimed = key
        log.error(
            "%s/inbox/%s/%s/%s: taking it failed (%s: %s)",
            self.root, run, step, name, type(exc).__name__, exc, exc_info=exc,
        )  # fmt: skip
        self._candidates.waiting.pop(key, None)
        dir_fd = self._dirs.claimed_fd if claimed else self._dirs.step_dir(run, step)
        if dir_fd is not None:
            self._reject(run, dir_fd, name, step, "error")

    def _wait(self, key: Key, p: Probe, dir_fd: int) -> None:
        """A file not ready yet: retried; rejected once unchanged for ``settle_s`` (a
        writer that holds it open is waited for however long)."""
        st = p.st
        size, mtime = (st.st_size, st.st_mtime_ns) if st else (None, None)
        old = self._candidates.waiting.get(key)
        now = time.monotonic()
        since = old.since if old and (old.size, old.mtime_ns) == (size, mtime) else now
        self._candidates.waiting[key] = Waiting(size, mtime, since, p.reason, now)
        if now - since >= self._settle_s and p.reason == "incomplete":
            del self._candidates.waiting[key]
            self._reject(key[0], dir_fd, key[2], key[1], "truncated")

    def _fold(self, run: str, step: int, name: str, p: Probe) -> None:
        """Read a claimed file, check it and fold it; a bad one is rejected."""
        nbytes = int(p.st.st_size) if p.st else 0
        try:
            reason = self._read_and_fold(run, step, name, p, nbytes)
        finally:
            self._reader.release()
            p.close()  # the lease goes with the fd, after the last read of a mapping
        if reason:
            self._reject(run, self._dirs.claimed_fd, name, step, reason)
            return
        self._counters["ingested_files"] += 1
        self._counters["ingested_bytes"] += nbytes
        if self._trace:
            self._trace.write(f"{name.split('~', 3)[-1]} {time.time():.6f}\n")
        faults.kill_at("daemon.folded")

    def _read_and_fold(self, run: str, step: int, name: str, p: Probe, nbytes: int) -> str:
        """Fold the file's numbers into the run's average; the reason it is rejected for
        instead, if any. Every view of a mapped file is gone when this returns."""
        try:
            arr = self._reader.read(p)
        except (OSError, EOFError):
            return "truncated"
        try:
            reason = array_problem(arr)
            if not reason:
                self._store.average(run).fold(step, arr, name, nbytes)
            return reason
        finally:
            del arr

    def _reject(self, run: str, dir_fd: int, name: str, step: int | str, reason: str) -> None:
        """Rename ``name`` into ``<inbox>/<run>/rejected/`` (never follows, never deletes)."""
        run_fd = self._dirs.run_dir(run)
        if run_fd is None:
            log.warning("cannot reject %s (%s): run directory %s is gone", name, reason, run)
            return
        try:
            os.mkdir("rejected", 0o700, dir_fd=run_fd)
        except FileExistsError:
            pass
        rej_fd = opendir("rejected", run_fd)
        if rej_fd is None:
            log.error(
                "%s/inbox/%s/rejected is not a directory; %s left in place", self.root, run, name
            )
            return
        base = name.split("~", 3)[-1] if dir_fd == self._dirs.claimed_fd else name
        target = f"{step}-{base}"
        try:
            if os.path.lexists(f"/proc/self/fd/{rej_fd}/{target}"):
                target = f"{step}-{secrets.token_hex(4)}-{base}"
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=rej_fd)
        except FileNotFoundError:
            return
        finally:
            os.close(rej_fd)
        self._counters["rejected"][reason] = self._counters["rejected"].get(reason, 0) + 1
        average = self._store.runs.get(run)
        if average is not None:
            average.rejected[reason] = average.rejected.get(reason, 0) + 1
        log.warning(
            "rejected %s/inbox/%s/%s/%s: %s (moved to %s/inbox/%s/rejected/%s)",
            self.root, run, step, base, reason, self.root, run, target,
        )  # fmt: skip

    # -- checkpoints and results (the store's) -----------------------------------------

    def checkpoint(self, interval_s: float, force: bool = False) -> None:
        """Checkpoint dirty runs (see :meth:`CheckpointStore.checkpoint`)."""
        self._store.checkpoint(interval_s, force)

    def finish_ready_runs(self, force: bool = False) -> None:
        """Write the result of every run whose DONE appeared, once its files are taken
        (or its grace time is over)."""
        for run, deadline in list(self._done.items()):
            if self._retry_at.get(run, 0.0) > time.monotonic():
                continue
            self._scanner.scan(run)  # synchronously: every file already there is taken first
            busy = self._candidates.busy(run)
            if busy and not force and time.monotonic() < deadline:
                continue
            if busy:
                log.warning("run %s: DONE seen but files still arriving; they start anew", run)
            try:
                self._store.finish(run)
            except (OSError, NoiseFSError) as exc:  # results dir full or gone: keep all
                log.error(
                    "run %s: result not written (%s); kept, retried in %g s",
                    run,
                    exc,
                    self._done_grace_s,
                )
                self._retry_at[run] = time.monotonic() + self._done_grace_s
                continue
            self._dirs.clear_run(run)
            self._retry_at.pop(run, None)
            del self._done[run]

    def shutdown(self) -> None:
        """Checkpoint everything and write the averages so far (not marked complete); the
        directory fds stay open until :meth:`close`."""
        self._store.shutdown()

    def close(self) -> None:
        """Stop the checkpoint thread, close the directory fds (idempotent)."""
        self._store.close()
        self._dirs.close()
        if self._trace:
            self._trace.close()
            self._trace = None
