"""Running a run's trajectories on a Dask cluster (``--scheduler``, ``--scheduler-file``).

One batch of the run loop is a *group* of leaves. :class:`DaskExecutor` cuts the group's
trajectory range into leaves (each a few seconds of simulation; see :func:`plan_for`),
submits one task per leaf — it simulates and folds its trajectories on its worker, through
that worker's own arena, and returns partial sums — and a fixed pairwise tree of ``add``
tasks over the leaves' indices, built up front. The group's future resolves with the
root's sums only: the client receives one set of sums per group, however many leaves.

Every leaf, sub-batch and tree node is fixed by the run alone (trajectories, circuit,
snapshot steps — never the cluster's size or the completion order), so the result is
bit-identical on one worker or many, and when Dask recomputes what a lost worker held.
Task keys hash everything that shapes the sums, so two different runs never share one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from pathlib import Path

import numpy
import scipy

from noisefs import __version__
from noisefs.arena import default_root
from noisefs.errors import InputError, NoiseFSError, SchedulerError
from noisefs.execute.dask_connect import (
    QuietDaskLogs,
    address_from_file,
    connect,
    wait_for_workers,
)
from noisefs.execute.dask_worker import (
    ArenaPlugin,
    Leaf,
    SumsShape,
    add_sums,
    job_value,
    run_leaf,
    unpack,
)
from noisefs.execute.protocol import BatchDone
from noisefs.execute.sizing import FixedSizer
from noisefs.sim.aer import SimulationJob
from noisefs.sim.batches import Batch

log = logging.getLogger("noisefs")

LEAF_TARGET_S = 2.0  # simulation seconds a leaf aims at (estimated, see _seconds_per_trajectory)
LEAF_FLOOR_S = 0.5  # and at least this much: a leaf's fixed costs (Aer's ~20 ms per job,
# zeroing, packing and adding its sums) stay a few per cent
MIN_LEAVES = 8  # a run is cut into at least this many leaves, when they last LEAF_FLOOR_S
LEAVES_PER_GROUP = 32  # leaves reduced into one set of sums that the client receives
MAX_SUB = 256  # trajectories per Aer job on a worker
SUB_BYTES = 8 * 2**20  # one Aer job's snapshots (every step) in a worker's arena
# tuning knobs (whole numbers): trajectories per leaf, leaves per group
LEAF_ENV, GROUP_ENV = "NOISEFS_DASK_LEAF", "NOISEFS_DASK_GROUP"


class Plan:
    """How a run is cut: ``sub`` trajectories per Aer job, ``leaf`` per leaf task (a
    multiple of ``sub``), ``group_leaves`` leaves per group (one loop batch)."""

    def __init__(self, sub: int, leaf: int, group_leaves: int) -> None:
        if min(sub, leaf, group_leaves) < 1 or leaf % sub:
            raise ValueError(f"bad plan: sub {sub}, leaf {leaf}, group {group_leaves}")
        self.sub, self.leaf, self.group_leaves = sub, leaf, group_leaves

    @property
    def group(self) -> int:
        """Trajectories per group."""
        return self.leaf * self.group_leaves

    def leaves(self, batch: Batch) -> list[Leaf]:
        """``batch``'s leaves, aligned on multiples of ``leaf`` from trajectory 0."""
        run_seed = batch.seed - batch.start
        out, start = [], batch.start
        while start < batch.stop:
            stop = min(batch.stop, (start // self.leaf + 1) * self.leaf)
            out.append(Leaf(start, stop - start, run_seed, self.sub))
            start = stop
        return out

    def as_list(self) -> list[int]:
        return [self.sub, self.leaf, self.group_leaves]


def _seconds_per_trajectory(job: SimulationJob, shape: SumsShape) -> float:
    """A rough, deterministic cost model of one trajectory on one thread (measured on the
    development machine): Aer's statevector simulation, ~17 ns per instruction per
    amplitude, and its fold into the ρ sums, ~0.43 ns per kept matrix element per step."""
    operations = max(1, len(getattr(job.circuit, "data", ())))
    kept = {"full": 2**shape.num_qubits, "reduced": 2 ** len(shape.keep or ()), "none": 0}
    fold = 4.3e-10 * shape.num_steps * kept.get(shape.density, 0) ** 2
    return 5e-6 + 17e-9 * operations * 2**shape.num_qubits + fold


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"${name} must be a positive integer, not {text!r}")
    return value


def plan_for(
    job: SimulationJob, shape: SumsShape, trajectories: int, batch: int | None = None
) -> Plan:
    """The plan of a run: a function of the run alone, never of the cluster.

    ``batch`` (``--batch``) fixes the Aer job size; otherwise it is what fills about
    :data:`SUB_BYTES`. Leaves aim at :data:`LEAF_TARGET_S` seconds of simulation, and a run
    gets at least :data:`MIN_LEAVES` of them where each still lasts :data:`LEAF_FLOOR_S`."""
    dim = 2**shape.num_qubits
    per_trajectory_bytes = 16 * dim * (dim if job.store == "dense" else 1) * shape.num_steps
    sub = batch or min(MAX_SUB, max(1, SUB_BYTES // per_trajectory_bytes))
    leaf = _env_int(LEAF_ENV)
    if leaf is None:
        per_trajectory = _seconds_per_trajectory(job, shape)
        by_count = max(math.ceil(trajectories / MIN_LEAVES), int(LEAF_FLOOR_S / per_trajectory))
        leaf = max(1, min(int(LEAF_TARGET_S / per_trajectory), by_count))
    sub = min(sub, leaf)
    leaf = math.ceil(leaf / sub) * sub
    return Plan(sub, leaf, _env_int(GROUP_ENV) or LEAVES_PER_GROUP)


def run_digest(job: SimulationJob, shape: SumsShape, plan: Plan, identity: dict | None) -> str:
    """A hash of everything that shapes the sums (``identity`` is the run's fingerprint:
    circuit, executed circuit, steps, K, noise, density, Qiskit and Aer versions); without
    one, a random digest that no other run can share."""
    if identity is None:
        return secrets.token_hex(8)
    described = {
        "identity": identity,
        "store": job.store,
        "labels": list(job.labels),
        "shape": [shape.num_qubits, shape.num_steps, shape.density, shape.keep],
        "plan": plan.as_list(),
        "versions": [__version__, numpy.__version__, scipy.__version__],
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DaskExecutor:
    """Groups of leaves on a Dask cluster; each group's future carries its root's sums.

    ``scheduler`` is an address or a ``distributed.Client`` (kept open at shutdown);
    ``scheduler_file`` a Dask scheduler file instead. ``shape`` is the run's sums',
    ``identity`` the run's fingerprint (task keys), ``batch`` the Aer job size, if fixed.
    ``completed`` counts the trajectories of finished leaves (never going backwards),
    ``received_bytes`` the bytes of the partial sums the client received (ρ sums packed
    as their upper triangles, and two timing scalars per set).
    """

    needs_adopt = False

    def __init__(
        self,
        arena,
        job: SimulationJob,
        scheduler=None,
        *,
        scheduler_file: str | os.PathLike | None = None,
        shape: SumsShape,
        identity: dict | None = None,
        batch: int | None = None,
        trajectories: int | None = None,
    ) -> None:
        self._shape = shape
        # Aer's threads are the worker's (see run_leaf); the workers' snapshots are tagged
        # apart from the client's, whose cleanup may share their node's arena
        self._job = dataclasses.replace(job.with_threads(1), run_name=f"{job.run_name}-dask")
        total = trajectories if trajectories is not None else (identity or {}).get("trajectories")
        self.plan = plan_for(self._job, self._shape, int(total or MAX_SUB), batch)
        self._digest = run_digest(self._job, self._shape, self.plan, identity)
        self._lock = threading.Lock()
        self._leaves: dict[str, tuple[object, int]] = {}
        self._roots: dict[str, object] = {}
        self._closed = False
        self.completed = 0
        self.received_bytes = 0
        self._logs = QuietDaskLogs()
        self._client, self._owned, self.address = self._client_for(scheduler, scheduler_file)
        try:
            threads = wait_for_workers(self._client, self.address)
            self._plugin_name = self._register_plugin(arena)
            self._job_future = self._client.submit(
                job_value, self._job, key=f"noisefs-job-{self._digest}"
            )
        except BaseException:
            self._close_client()
            raise
        self.slots = max(2, math.ceil(2 * threads / self.plan.group_leaves) + 1)
        log.info(
            "dask: %s, %d threads; leaves of %d trajectories (Aer jobs of %d), %d per group",
            self.address,
            threads,
            self.plan.leaf,
            self.plan.sub,
            self.plan.group_leaves,
        )

    # -- setup ---------------------------------------------------------------------------

    def _client_for(self, scheduler, scheduler_file):
        if scheduler is not None and not isinstance(scheduler, (str, os.PathLike)):
            return scheduler, False, str(getattr(scheduler.scheduler, "address", scheduler))
        address = str(scheduler) if scheduler is not None else address_from_file(scheduler_file)
        self._logs.quiet()
        try:
            return connect(address), True, address
        except BaseException:
            self._logs.restore()
            raise

    def _register_plugin(self, arena) -> str:
        """Open an arena in every worker process (present and future)."""
        root = None if Path(arena.root) == Path(default_root()) else str(arena.root)
        plugin = ArenaPlugin(root, timeout_s=arena.timeout_s)
        settings = json.dumps([root, plugin.timeout_s])
        name = f"noisefs-arena-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
        try:  # a worker that cannot open its arena raises the arena's own error here
            replies = self._client.register_plugin(plugin, name=name) or {}
        except BaseException as exc:
            try:  # else every worker that joins later would fail the same way
                self._client.unregister_worker_plugin(name)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                log.debug("dask: unregistering the arena plugin failed", exc_info=True)
            if isinstance(exc, ImportError):
                raise self._translate(exc, None) from None
            raise
        for worker, reply in replies.items():
            if isinstance(reply, dict) and reply.get("status") == "error":
                raise SchedulerError(
                    f"dask worker {worker} could not open its noisefs arena: "
                    f"{reply.get('exception_text') or reply.get('exception')}",
                    address=self.address,
                )
        return name

    def meta(self) -> dict:
        """What a result file could record of this execution (JSON-able)."""
        return {
            "kind": "dask",
            "address": self.address,
            "sub": self.plan.sub,
            "leaf": self.plan.leaf,
            "group_leaves": self.plan.group_leaves,
            "received_bytes": self.received_bytes,
        }

    def preferred_sizer(self) -> FixedSizer:
        """Loop batches of one group each (aligned, so a resumed run cuts the same ones)."""
        return FixedSizer(self.plan.group)

    # -- submitting ----------------------------------------------------------------------

    def submit(self, batch: Batch) -> Future[BatchDone]:
        """Submit ``batch``'s leaves and their reduction tree; the future gets the root's sums."""
        client, digest = self._client, self._digest
        run_seed = batch.seed - batch.start  # in every key: runs differing by it alone differ
        level = []
        for leaf in self.plan.leaves(batch):
            key = f"noisefs-leaf-{digest}-{leaf.start}-{leaf.size}-{leaf.run_seed}"
            future = client.submit(
                run_leaf, self._job_future, self._shape, leaf, self._plugin_name, key=key
            )
            with self._lock:
                self._leaves[key] = (future, leaf.size)
            future.add_done_callback(self._leaf_done)
            level.append(future)
        depth = 0
        while len(level) > 1:  # pairs (0,1), (2,3), ...; an odd last one goes up as it is
            pairs = [
                client.submit(
                    add_sums,
                    level[i],
                    level[i + 1],
                    key=f"noisefs-add-{digest}-{run_seed}-{batch.start}-{batch.stop}-{depth}-{i // 2}",
                )
                for i in range(0, len(level) - 1, 2)
            ]
            level = pairs + ([level[-1]] if len(level) % 2 else [])
            depth += 1
        root = level[0]
        done: Future[BatchDone] = Future()
        with self._lock:
            self._roots[root.key] = root
        root.add_done_callback(lambda finished: self._root_done(finished, batch, done))
        return done

    def _leaf_done(self, future) -> None:
        with self._lock:
            entry = self._leaves.pop(future.key, None)  # the client holds it no longer
            if entry is not None and future.status == "finished":
                self.completed += entry[1]

    def _root_done(self, root, batch: Batch, done: Future) -> None:
        with self._lock:
            self._roots.pop(root.key, None)
        try:
            state = root.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the loop
            self._resolve(done, exception=self._translate(exc, batch))
            return
        with self._lock:
            self.received_bytes += sum(int(getattr(v, "nbytes", 8)) for v in state.values())
        sums, simulate_s, store_s = unpack(state)
        self._resolve(done, BatchDone(batch, sums=sums, simulate_s=simulate_s, store_s=store_s))

    @staticmethod
    def _resolve(done: Future, result=None, exception=None) -> None:
        if done.cancelled():
            return
        try:
            if exception is not None:
                done.set_exception(exception)
            else:
                done.set_result(result)
        except InvalidStateError:  # cancelled meanwhile by the loop
            pass

    def _translate(self, exc: BaseException, batch: Batch | None) -> BaseException:
        """Dask's failures as one clear noisefs error; the simulation's own errors as they are."""
        if isinstance(exc, NoiseFSError):
            return exc
        if isinstance(exc, ImportError):
            return SchedulerError(
                f"the Dask workers of {self.address} cannot import what noisefs needs ({exc}); "
                "install the same noisefs, with its dask extra, where the workers run",
                address=self.address,
            )
        what = f"trajectories {batch.start}-{batch.stop - 1}" if batch else "the run"
        if type(exc).__name__ == "KilledWorker":
            return SchedulerError(
                f"{what}: a task killed every Dask worker that ran it (out of memory? see the "
                f"workers' logs): {exc}",
                address=self.address,
            )
        # the scheduler lost: its tasks dropped, or the connection closed under a gather
        connection_lost = type(exc).__name__ in ("CommClosedError", "StreamClosedError")
        if isinstance(exc, CancelledError) or connection_lost:
            return SchedulerError(
                f"the Dask scheduler at {self.address} dropped the tasks of {what} (scheduler "
                "restarted or connection lost); with an output file, rerun with --resume",
                address=self.address,
            )
        return exc

    # -- shutting down -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel what is still submitted; close the client if this executor opened it."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = list(self._roots.values()) + [f for f, _ in self._leaves.values()]
            self._roots.clear()
            self._leaves.clear()
        try:
            if pending:
                self._client.cancel(pending)
            self._job_future.release()
        except Exception:  # noqa: BLE001 - the scheduler may be gone already
            log.debug("dask: cancelling at shutdown failed", exc_info=True)
        self._close_client()

    def _close_client(self) -> None:
        if not self._owned:
            return  # nor its logs: they are the caller's
        # closing a client whose scheduler is gone cancels its reconnection, which Dask
        # logs with a traceback: the run's own error already says what happened
        self._logs.silence()
        try:
            self._client.close(timeout=5)
        except Exception:  # noqa: BLE001 - closing a lost connection
            log.debug("dask: closing the client failed", exc_info=True)
        finally:
            self._logs.restore()
