"""Ingest of foreign ``.npy`` snapshots written into ``<arena>/inbox/<run>/<step>/``.

A candidate (from an event or a scan) is probed (:mod:`noisefs.daemon.npyfile`), claimed
by renaming it into ``<arena>/daemon/claimed/`` (same filesystem, daemon-only), checked to
be the inode that was probed, read, folded into the run's running average, and unlinked
once a checkpoint covering it is durable (:mod:`noisefs.daemon.durable`). Rejected entries
are renamed into ``<arena>/inbox/<run>/rejected/`` (a symlink moves itself; its target is
never touched) with a log line naming the reason. Every operation is relative to a
directory fd opened with ``O_NOFOLLOW``: nothing outside the arena is opened or deleted.
"""

from __future__ import annotations

import cmath
import logging
import os
import secrets
import time
from pathlib import Path

import numpy as np

from noisefs.arena.paths import DIR_FLAGS, RUN_NAME
from noisefs.daemon.config import ArenaConfig, DaemonConfig
from noisefs.daemon.durable import CheckpointWriter, Durability, claim_hook, fault
from noisefs.daemon.npyfile import Probe, Reader, probe
from noisefs.daemon.runs import RunAverage
from noisefs.daemon.scan import Scanner, opendir

log = logging.getLogger("noisefs.daemon")

MAX_QUBITS = 12  # a (2ⁿ, 2ⁿ) running sum per step: 256 MiB at 12 qubits


class Inbox(Scanner, Durability):
    """The inbox of one arena and the running averages of its runs."""

    def __init__(
        self,
        root_fd: int,
        root: Path,
        cfg: ArenaConfig,
        state_dir: Path,
        counters: dict,
        timing: DaemonConfig,
    ) -> None:
        self.root = root
        self.cfg = cfg
        self.settle_s = timing.settle_s
        self.done_grace_s = timing.done_grace_s
        self.state_dir = state_dir
        self.c = counters
        self.root_fd = root_fd  # the daemon's, open as long as this inbox
        self.inbox_fd = self.daemon_fd = self.claimed_fd = -1
        self._writer: CheckpointWriter | None = None
        self._trace = None
        self.reopened = False  # the inbox was replaced: the daemon restarts its watch
        self.runs: dict[str, RunAverage] = {}
        self.finished: dict[str, dict] = {}  # the last runs whose result DONE wrote
        self.todo: dict[tuple, float] = {}  # candidates → when first hinted
        self.waiting: dict[tuple, tuple] = {}  # (size, mtime_ns, since, reason)
        self.done: dict[str, float] = {}  # runs whose DONE appeared → grace deadline
        self.usage = (0, 0)
        self._dirs: dict[tuple, int | None] = {}
        self._reader = Reader()
        self._faults: dict = {}
        self._warned: set[str] = set()
        self._errors: set[tuple] = set()
        self._retry_at: dict[str, float] = {}  # runs whose result could not be written
        self._last_ckpt = self._last_retry = time.monotonic()
        self._ckpt_cost = 0.0
        self.pending_limit_bytes = 128 << 20  # set from the arena's quota by the daemon
        try:
            self._open(root_fd, state_dir)
        except BaseException:  # nothing opened so far is left behind
            self.close()
            raise

    def _open(self, root_fd: int, state_dir: Path) -> None:
        """Directories, the checkpoint writer, the checkpoints (closed by the caller on
        failure)."""
        for name in ("inbox", "daemon"):
            try:
                os.mkdir(name, 0o700, dir_fd=root_fd)
            except FileExistsError:
                pass
        self.inbox_fd = os.open("inbox", DIR_FLAGS, dir_fd=root_fd)
        self.daemon_fd = os.open("daemon", DIR_FLAGS, dir_fd=root_fd)
        try:
            os.mkdir("claimed", 0o700, dir_fd=self.daemon_fd)
        except FileExistsError:
            pass
        self.claimed_fd = os.open("claimed", DIR_FLAGS, dir_fd=self.daemon_fd)
        self._writer = CheckpointWriter(
            self.claimed_fd, lambda: fault("checkpointed", self._faults)
        )
        trace = os.environ.get("NOISEFS_DAEMON_TRACE")
        self._trace = open(trace, "a", buffering=1 << 16) if trace else None  # noqa: SIM115
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._recover()

    # -- taking files ------------------------------------------------------------------

    def _dir(self, run: str, step: int | None) -> int | None:
        key = (run, step)
        if key not in self._dirs:
            if step is None:
                self._dirs[key] = opendir(run, self.inbox_fd) if RUN_NAME.fullmatch(run) else None
            else:
                parent = self._dir(run, None)
                self._dirs[key] = None if parent is None else opendir(str(step), parent)
        return self._dirs[key]

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            if fd is not None:
                os.close(fd)
        self._dirs.clear()

    def process(self, budget_s: float = 0.2) -> int:
        """Take queued candidates for up to ``budget_s``; retry waiting ones; return how
        many were handled."""
        deadline = time.monotonic() + budget_s
        handled = 0
        try:
            now = time.monotonic()
            if self.waiting and now - self._last_retry >= 0.05:
                self._last_retry = now
                for key, entry in list(self.waiting.items()):
                    # retried soon, then less often the longer a writer keeps it open
                    if now - entry[4] >= min(2.0, 0.05 + (now - entry[2]) / 10):
                        self.todo.setdefault(key, now)
            while self.todo and time.monotonic() < deadline:
                key = next(iter(self.todo))
                del self.todo[key]
                try:
                    self._take(key)
                except OSError as exc:  # EXDEV (a mount inside the inbox), EACCES, EIO ...
                    self._failed(key, exc)
                handled += 1
            for run in self.runs.values():
                run.flush()
        finally:
            self._close_dirs()
            if self._trace:
                self._trace.flush()
        return handled

    def _take(self, key: tuple) -> None:
        run, step, name, claimed = key
        dir_fd = self.claimed_fd if claimed else self._dir(run, step)
        if dir_fd is None:
            self.waiting.pop(key, None)
            return
        p = probe(dir_fd, name)
        if p.verdict == "gone":
            self.waiting.pop(key, None)
        elif p.verdict == "reject":
            self.waiting.pop(key, None)
            self._reject(run, dir_fd, name, step, p.reason)
        elif p.verdict == "wait":
            self._wait(key, p, dir_fd)
        else:
            self.waiting.pop(key, None)
            reason = self._shape_problem(run, p)
            if reason:
                p.close()
                self._reject(run, dir_fd, name, step, reason)
                return
            if not claimed:
                target = f"{run}~{step}~{secrets.token_hex(6)}~{name}"
                claim_hook()
                try:
                    os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=self.claimed_fd)
                except FileNotFoundError:
                    p.close()
                    return
                fault("claimed", self._faults)
                st = os.stat(target, dir_fd=self.claimed_fd, follow_symlinks=False)
                assert p.st is not None
                if (st.st_dev, st.st_ino) != (p.st.st_dev, p.st.st_ino):
                    # another file was renamed over the name after the probe: what was
                    # claimed is that one, never probed; probe it afresh where it is now
                    p.close()
                    self.todo[(run, step, target, True)] = time.monotonic()
                    return
                if st.st_nlink != 1:  # a hard link made after the probe
                    p.close()
                    self._reject(run, self.claimed_fd, target, step, "hard_link")
                    return
                name, dir_fd = target, self.claimed_fd
            self._fold(run, step, name, p)

    def _failed(self, key: tuple, exc: OSError) -> None:
        """A file that cannot be taken for a system reason: logged once, retried slowly,
        never deleted."""
        if key not in self._errors:
            self._errors.add(key)
            log.warning("%s/inbox/%s/%s/%s: %s (left in place, retried)", self.root, *key[:3], exc)
        now = time.monotonic()
        self.waiting[key] = (None, None, now - 20.0, "error", now)

    def _wait(self, key: tuple, p: Probe, dir_fd: int) -> None:
        """A file not ready yet: retried; rejected once unchanged for ``settle_s`` (a
        writer that holds it open is waited for however long)."""
        st = p.st
        sig = (st.st_size, st.st_mtime_ns) if st else (None, None)
        old = self.waiting.get(key)
        now = time.monotonic()
        since = old[2] if old and old[:2] == sig else now
        self.waiting[key] = (*sig, since, p.reason, now)  # size, mtime, since, why, tried
        settled = now - since >= self.settle_s
        if settled and p.reason in ("incomplete",):
            del self.waiting[key]
            self._reject(key[0], dir_fd, key[2], key[1], "truncated")

    def _shape_problem(self, run: str, p: Probe) -> str:
        shape = p.shape
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != shape[1]):
            return "shape"
        d = shape[0]
        if d < 2 or d & (d - 1):
            return "shape"
        if d > 2**MAX_QUBITS:
            return "too_large"
        average = self.runs.get(run)
        if average is not None and average.num_qubits is not None:
            if d != 2**average.num_qubits:
                return "shape"
        return ""

    def _fold(self, run: str, step: int, name: str, p: Probe) -> None:
        try:
            arr = self._reader.read(p)
        except (OSError, EOFError):
            p.close()
            self._reject(run, self.claimed_fd, name, step, "truncated")
            return
        try:
            self._check_and_fold(run, step, name, p, arr)
        finally:
            del arr
            self._reader.release()
            p.close()  # the lease goes with the fd, after the last read of a mapping

    def _check_and_fold(self, run: str, step: int, name: str, p: Probe, arr) -> None:
        nbytes = int(p.st.st_size) if p.st else 0
        # one pass each: a sum is finite only when every element is (ψ: Σ|a|², ρ: Σ a)
        if arr.ndim == 1:
            norm = total = float(np.vdot(arr, arr).real)
        else:
            norm, total = float(np.trace(arr).real), complex(arr.sum())
        if not cmath.isfinite(total):
            self._reject(run, self.claimed_fd, name, step, "not_finite")
            return
        tol = 1e-4 if arr.dtype.itemsize <= 8 else 1e-6
        if abs(norm - 1.0) > tol:
            self._reject(run, self.claimed_fd, name, step, "not_normalized")
            return
        average = self.runs.get(run)
        if average is None:
            average = self.runs[run] = RunAverage(run, self._ckpt_path(run), self.cfg.results_dir)
        average.fold(step, arr, name, nbytes)
        self.c["ingested_files"] += 1
        self.c["ingested_bytes"] += nbytes
        if self._trace:
            self._trace.write(f"{name.split('~', 3)[-1]} {time.time():.6f}\n")
        fault("folded", self._faults)

    def _reject(self, run: str, dir_fd: int, name: str, step: int, reason: str) -> None:
        """Rename ``name`` into ``<inbox>/<run>/rejected/`` (never follows, never deletes)."""
        run_fd = self._dir(run, None) if RUN_NAME.fullmatch(run) else None
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
        base = name.split("~", 3)[-1] if dir_fd == self.claimed_fd else name
        target = f"{step}-{base}"
        try:
            if os.path.lexists(f"/proc/self/fd/{rej_fd}/{target}"):
                target = f"{step}-{secrets.token_hex(4)}-{base}"
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=rej_fd)
        except FileNotFoundError:
            return
        finally:
            os.close(rej_fd)
        self.c["rejected"][reason] = self.c["rejected"].get(reason, 0) + 1
        average = self.runs.get(run)
        if average is not None:
            average.rejected[reason] = average.rejected.get(reason, 0) + 1
        log.warning(
            "rejected %s/inbox/%s/%s/%s: %s (moved to %s/inbox/%s/rejected/%s)",
            self.root, run, step, base, reason, self.root, run, target,
        )  # fmt: skip

    def close(self) -> None:
        """Stop the checkpoint writer, close the directory fds (idempotent)."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        for fd in (self.claimed_fd, self.daemon_fd, self.inbox_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.inbox_fd = self.daemon_fd = self.claimed_fd = -1
        if self._trace:
            self._trace.close()
            self._trace = None
