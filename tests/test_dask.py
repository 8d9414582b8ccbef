"""Dask execution on a real cluster on loopback (``dask scheduler --scheduler-file`` and
``dask worker`` processes started here and killed at the end, even on failure).

Exactness: equal to Aer's oracle, bit-identical on one worker or two, after a worker is
SIGKILLed mid-run, and after the client is SIGKILLed and the run resumed. Failures to
reach a scheduler: exit 3, one line, within seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import noisefs
from noisefs.arena import Arena
from noisefs.errors import InputError, SchedulerError, SimulationError
from noisefs.oracle import aer_reference, aer_reference_expectations, aer_reference_steps
from tests import circuits

distributed = pytest.importorskip("distributed")

NOISE = {"p1": 0.02, "p2": 0.05, "t1": "20us", "t2": "30us"}
# a 3-qubit circuit slow enough (~1.5 ms per trajectory) to be interrupted mid-run
_LAYERS = "".join("sx q[0];\ncx q[0],q[1];\ncx q[1],q[2];\n" for _ in range(150))
SLOW3 = f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\n{_LAYERS}barrier q;\n{_LAYERS}'


DASK = [sys.executable, "-m", "dask"]


def _semaphores() -> set[str]:
    """multiprocessing's named semaphores in /dev/shm (a SIGKILLed worker leaves its own)."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")}
    except FileNotFoundError:
        return set()


def _mapped_semaphores() -> set[str]:
    """The ``sem.mp-*`` files some live process has mapped (``sem_open`` maps the file):
    semaphores in use, which only their owners may unlink. Processes whose maps cannot be
    read count as mapping every one of them."""
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps") as maps:
                text = maps.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            return _semaphores()
        found.update(
            line.rsplit("/", 1)[1].removesuffix(" (deleted)")
            for line in text.splitlines()
            if "/dev/shm/sem.mp-" in line
        )
    return found


class LoopbackCluster:
    """A scheduler on 127.0.0.1 and worker processes started with :meth:`add_worker`."""

    def __init__(self, tmp: Path) -> None:
        self.semaphores_before = _semaphores()
        self.tmp = tmp
        self.file = tmp / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.scheduler = self._spawn(
            "scheduler",
            ["scheduler", "--scheduler-file", str(self.file), "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard"],
        )
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start: {self.log('scheduler')}")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
        while True:  # the file may be written before the listener accepts
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dask scheduler not listening: {self.log('scheduler')}"
                    ) from None
                time.sleep(0.05)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        process = subprocess.Popen(
            DASK + args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def add_worker(self) -> subprocess.Popen:
        """One more worker process (under a nanny that restarts it if it dies)."""
        worker = self._spawn(
            f"worker{len(self.workers)}",
            ["worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--host"]
            + ["127.0.0.1", "--no-dashboard", "--memory-limit", "0", "--death-timeout", "60"],
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, client, count: int, timeout_s: float = 90.0) -> None:
        """Until exactly ``count`` workers are connected."""
        deadline = time.monotonic() + timeout_s
        while len(client.scheduler_info(n_workers=-1)["workers"]) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not {count} dask workers: {self.log('worker0')}")
            time.sleep(0.2)

    def close(self) -> None:
        """SIGTERM first (Dask closes and its resource trackers unlink their semaphores),
        SIGKILL what is still there after 10 s; then remove the ``sem.mp-*`` files in
        /dev/shm that processes killed on purpose during the tests left behind."""
        for how in (signal.SIGTERM, signal.SIGKILL):
            for process in reversed(self.processes):
                try:
                    os.killpg(process.pid, how)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
                time.sleep(0.1)
        for process in self.processes:
            process.wait(timeout=30)
        in_use = _mapped_semaphores()  # another program's (a run's process pool beside
        for name in _semaphores() - self.semaphores_before - in_use:  # these tests) stay
            Path("/dev/shm", name).unlink(missing_ok=True)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_arena():
    """One arena root for every run of this module, clients and workers alike (a worker
    process reopens every registered arena when its nanny restarts it)."""
    root = Path("/dev/shm" if Path("/dev/shm").is_dir() else "/tmp") / (
        f"noisefs-test-dask-{uuid.uuid4().hex[:8]}"
    )
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, dask_arena):
    """A scheduler with one worker (tests add a second where they need it)."""
    cluster = LoopbackCluster(tmp_path_factory.mktemp("dask"))
    try:
        cluster.add_worker()
        with distributed.Client(cluster.address, set_as_default=False) as client:
            cluster.wait_for_workers(client, 1)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def monitor(cluster):
    """A client of the test's own, to watch and steer the cluster."""
    with distributed.Client(cluster.address, set_as_default=False) as client:
        yield client


@pytest.fixture
def kwargs(dask_arena, tmp_path):
    return {"arena": str(dask_arena), "spill": str(tmp_path / "spill"), "quota": "64MiB"}


def _two_workers(cluster, monitor) -> None:
    if len(cluster.workers) < 2:
        cluster.add_worker()
    cluster.wait_for_workers(monitor, 2)


def _snapshots_left(root) -> list[str]:
    with Arena.open_existing(root) as arena:
        return arena.keys()


def _results(result) -> tuple:
    return (result.rho, result.probabilities, result.z_mean, result.z_stderr)


def _assert_identical(a, b) -> None:
    assert a.trajectories == b.trajectories
    for left, right in zip(_results(a), _results(b), strict=True):
        assert np.array_equal(left, right)


# -- exact results -------------------------------------------------------------------------


def test_one_and_two_workers_equal_the_oracle_bit_for_bit(
    cluster, monitor, kwargs, tmp_path, monkeypatch
):
    monkeypatch.setenv("NOISEFS_DASK_LEAF", "38")  # 16 leaves (the last of 31 trajectories)
    monkeypatch.setenv("NOISEFS_DASK_GROUP", "5")  # in groups of 5, 5, 5 and 1
    path = circuits.write(tmp_path, "qft4.qasm", circuits.QFT4)
    cluster.wait_for_workers(monitor, 1)
    one = noisefs.run(path, scheduler=cluster.address, trajectories=601, seed=11, **NOISE, **kwargs)
    _two_workers(cluster, monitor)
    two = noisefs.run(path, scheduler=cluster.address, trajectories=601, seed=11, **NOISE, **kwargs)
    _assert_identical(one, two)
    assert two.trajectories == 601 and two.meta["batches"] == 4
    assert np.max(np.abs(two.rho[-1] - aer_reference(two.meta))) <= 1e-8
    assert np.max(np.abs(two.rho - aer_reference_steps(two.meta, two.steps))) <= 1e-8
    # the same run through a Client object
    with distributed.Client(cluster.address, set_as_default=False) as client:
        _assert_identical(
            two, noisefs.run(path, scheduler=client, trajectories=601, seed=11, **NOISE, **kwargs)
        )
    assert not _snapshots_left(kwargs["arena"])


def test_observables_folded_on_the_cluster_equal_aers(cluster, monitor, kwargs, tmp_path):
    path = circuits.write(tmp_path, "qft4.qasm", circuits.QFT4)
    cluster.wait_for_workers(monitor, len(cluster.workers))  # one or two: either is exact
    result = noisefs.run(
        path, scheduler=cluster.address, trajectories=301, seed=4, snapshots="every:5",
        observables={"xy": "X0 Y1", "h": "0.5*Z0 Z1 - 1.2*X2", "zzzz": "ZZZZ"}, **NOISE, **kwargs,
    )  # fmt: skip
    want = aer_reference_expectations(result.meta, result.steps)
    assert np.max(np.abs(result.observables - want)) <= 1e-8
    assert np.all(result.observables_stderr[-1] > 0)


def test_concurrent_runs_that_differ_by_the_seed_share_no_task(
    cluster, monitor, kwargs, tmp_path, monkeypatch
):
    monkeypatch.setenv("NOISEFS_DASK_LEAF", "20")
    path = circuits.write(tmp_path, "ghz4.qasm", circuits.GHZ4)
    results: dict = {}

    def run(seed: int) -> None:
        results[seed] = noisefs.run(
            path, scheduler=cluster.address, trajectories=200, seed=seed, **NOISE, **kwargs
        )

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (1, 2):  # a task of the other run would be off by ~1/K
        assert np.max(np.abs(results[seed].rho[-1] - aer_reference(results[seed].meta))) <= 1e-8
    assert not np.array_equal(results[1].rho, results[2].rho)


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_no_bit(cluster, monitor, kwargs, tmp_path, monkeypatch):
    monkeypatch.setenv("NOISEFS_DASK_LEAF", "100")
    path = circuits.write(tmp_path, "slow3.qasm", SLOW3)
    _two_workers(cluster, monitor)
    reference = noisefs.run(
        path, scheduler=cluster.address, trajectories=3000, seed=3, **NOISE, **kwargs
    )
    killed: dict = {}

    def kill_the_busiest() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            held = {
                worker: sum(1 for key in keys if str(key).startswith("noisefs-"))
                for worker, keys in monitor.has_what().items()
            }
            if sum(held.values()) >= 4:
                victim = max(held, key=held.get)
                pid = monitor.run(os.getpid, workers=[victim])[victim]
                killed.update(worker=victim, held=held[victim], pid=pid)
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_busiest)
    killer.start()
    result = noisefs.run(
        path, scheduler=cluster.address, trajectories=3000, seed=3, **NOISE, **kwargs
    )
    killer.join()
    assert killed, "no worker was killed while the run was going"
    _assert_identical(reference, result)
    cluster.wait_for_workers(monitor, 2)  # the nanny restarted it; opening the arena
    deadline = time.monotonic() + 10  # swept what the killed process left there
    while _snapshots_left(kwargs["arena"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _snapshots_left(kwargs["arena"])


@pytest.mark.slow
def test_client_killed_then_resume_is_exact(cluster, monitor, kwargs, tmp_path, monkeypatch):
    _two_workers(cluster, monitor)
    path = circuits.write(tmp_path, "slow3.qasm", SLOW3)
    for name, value in (("NOISEFS_DASK_LEAF", "100"), ("NOISEFS_DASK_GROUP", "3")):
        monkeypatch.setenv(name, value)  # 8 groups of 300 trajectories
    output = tmp_path / "out.npz"
    checkpoint = Path(f"{output}.ckpt.npz")
    command = [sys.executable, "-m", "noisefs", "run", str(path), "-k", "2400", "--seed", "21"]
    command += ["--scheduler-file", str(cluster.file), "--output", str(output), "--quiet"]
    command += ["--checkpoint-interval", "0.1", "--arena", kwargs["arena"]]
    command += [f"--{name.replace('_', '-')}={value}" for name, value in NOISE.items()]
    client = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and client.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.02)
        client.send_signal(signal.SIGKILL)
    finally:
        client.kill()
        stderr = client.communicate()[1]
    assert client.returncode == -signal.SIGKILL, stderr.decode(errors="replace")
    assert not output.exists()
    from noisefs.aggregate.checkpoint import load_checkpoint

    folded = int(np.sum(np.diff(load_checkpoint(checkpoint).folded, axis=1)))
    assert 0 < folded < 2400
    options = {"trajectories": 2400, "seed": 21, **NOISE, **kwargs}
    resumed = noisefs.run(path, scheduler_file=cluster.file, output=output, resume=True, **options)
    fresh = noisefs.run(path, scheduler=cluster.address, **options)
    assert resumed.trajectories == 2400
    _assert_identical(fresh, resumed)


@pytest.mark.slow
def test_the_scheduler_killed_mid_run_is_one_error_line_and_a_checkpoint(tmp_path, kwargs):
    doomed = LoopbackCluster(tmp_path)
    try:
        doomed.add_worker()
        with distributed.Client(doomed.address, set_as_default=False) as client:
            doomed.wait_for_workers(client, 1)
        path = circuits.write(tmp_path, "slow3.qasm", SLOW3)
        output = tmp_path / "out.npz"
        command = [sys.executable, "-m", "noisefs", "run", str(path), "-k", "6000", "--quiet"]
        command += ["--scheduler", doomed.address, "--output", str(output), "--arena"]
        command += [kwargs["arena"], "--checkpoint-interval", "0.1"]
        env = {**os.environ, "NOISEFS_DASK_LEAF": "100", "NOISEFS_DASK_GROUP": "3"}
        client = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        checkpoint = Path(f"{output}.ckpt.npz")
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and client.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(doomed.scheduler.pid, signal.SIGKILL)
        stderr = client.communicate(timeout=60)[1]
    finally:
        doomed.close()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert client.returncode == 3, stderr
    assert len(lines) == 1 and "--resume" in lines[0], stderr
    assert checkpoint.exists() and not output.exists()


# -- failures ------------------------------------------------------------------------------


@pytest.fixture
def silent_port():
    """A TCP listener that accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_cli_no_scheduler_exits_3_with_one_line(silent_port, kwargs, tmp_path):
    path = circuits.write(tmp_path, "ghz4.qasm", circuits.GHZ4)
    runs = {}
    for address in ("tcp://127.0.0.1:1", f"tcp://127.0.0.1:{silent_port}"):  # side by side
        command = [sys.executable, "-m", "noisefs", "run", str(path), "-k", "8", "--quiet"]
        command += ["--scheduler", address, "--arena", kwargs["arena"]]
        runs[address] = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for address, proc in runs.items():
        stderr = proc.communicate(timeout=120)[1]  # no hang: the connection has a deadline
        assert proc.returncode == 3, stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and address in lines[0], stderr
    assert not (tmp_path / "ghz4.noisefs.npz").exists()


def test_the_handshake_with_a_silent_port_has_a_deadline(silent_port):
    from noisefs.execute.dask_connect import connect

    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            connect(f"tcp://127.0.0.1:{silent_port}", deadline_s=1.5)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)  # without a deadline the handshake would wait forever
    assert not thread.is_alive(), "connect() did not give up on a silent port"
    assert isinstance(outcome[0], SchedulerError)
    assert "did not answer as a Dask scheduler" in str(outcome[0])


def test_a_scheduler_without_workers_waits_then_fails(tmp_path, kwargs, monkeypatch, caplog):
    from noisefs.execute import dask_connect

    monkeypatch.setattr(dask_connect, "WAIT_FOR_WORKERS_S", 1.0)
    empty = LoopbackCluster(tmp_path)
    try:
        path = circuits.write(tmp_path, "ghz4.qasm", circuits.GHZ4)
        with pytest.raises(SchedulerError, match="no Dask worker joined") as caught:
            noisefs.run(path, scheduler_file=empty.file, trajectories=8, seed=1, **kwargs)
        assert caught.value.exit_code == 3 and empty.address in str(caught.value)
        assert "has no workers yet; waiting" in caplog.text
    finally:
        empty.close()


def test_a_missing_or_bad_scheduler_file(tmp_path):
    from noisefs.execute.dask_connect import address_from_file

    with pytest.raises(SchedulerError, match="no such file"):
        address_from_file(tmp_path / "missing.json", deadline_s=0.2)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a Dask scheduler file"):
        address_from_file(tmp_path / "bad.json")


# -- the plan ------------------------------------------------------------------------------


def test_leaves_are_aligned_and_the_tree_adds_without_changing_its_inputs():
    from noisefs.execute.dask import Plan
    from noisefs.execute.dask_worker import add_sums
    from noisefs.sim.batches import batch_for

    plan = Plan(sub=4, leaf=8, group_leaves=3)
    leaves = plan.leaves(batch_for(0, 5, 20, run_seed=100))
    assert [(leaf.start, leaf.size) for leaf in leaves] == [(5, 3), (8, 8), (16, 8), (24, 1)]
    assert [(b.start, b.size, b.seed) for b in leaves[0].batches()] == [(5, 3, 105)]
    assert [(b.start, b.size) for b in leaves[1].batches()] == [(8, 4), (12, 4)]
    left, right = {"x": np.ones(3)}, {"x": np.full(3, 2.0)}
    assert np.array_equal(add_sums(left, right)["x"], np.full(3, 3.0))
    assert np.array_equal(left["x"], np.ones(3))
    with pytest.raises(ValueError):
        Plan(sub=3, leaf=8, group_leaves=1)


def test_a_leaf_folds_step_by_step_beyond_its_share_with_the_same_bits(arena_root, monkeypatch):
    from noisefs.execute import dask_worker
    from noisefs.execute.dask_worker import ArenaPlugin, Leaf, SumsShape, run_leaf
    from noisefs.options import make_run
    from noisefs.pipeline.prepared import prepare_run
    from noisefs.sim.aer import SimulationJob

    options, noise = make_run(circuits.GHZ4, **NOISE)
    run = prepare_run(options, noise)
    job = SimulationJob(run.circuit_with_saves, run.labels, run.noise_model, "factored", "t", 1)
    shape = SumsShape(run.num_qubits, len(run.steps), "full", None)
    plugin = ArenaPlugin(str(arena_root))
    plugin.setup()
    monkeypatch.setattr(dask_worker, "_plugin", lambda name: plugin)
    try:
        leaf = Leaf(start=3, size=20, run_seed=9, sub=8)
        whole = run_leaf(job, shape, leaf, "p")
        monkeypatch.setattr(ArenaPlugin, "share_bytes", lambda self: 1)
        by_step = run_leaf(job, shape, leaf, "p")
        assert plugin.arena.keys() == []
    finally:
        plugin.teardown()
    assert len(run.steps) > 1 and whole.keys() == by_step.keys()
    for name in whole:
        if name not in ("simulate_s", "store_s"):
            assert np.array_equal(whole[name], by_step[name]), name
    assert int(whole["count"][-1]) == 20
    # unpacked, the leaf's sums are those of folding its Aer jobs here, bit for bit
    from noisefs.aggregate import fold_batch
    from noisefs.execute.dask_worker import unpack
    from noisefs.execute.local import run_batch

    sums, _, _ = unpack(whole)
    here = shape.empty()
    with Arena(root=str(arena_root)) as arena:
        for batch in leaf.batches():
            fold_batch(arena, run_batch(arena, job, batch).keys, here, "factored")
    assert sums.keys() == here.state().keys()
    for name, value in here.state().items():
        assert np.array_equal(sums[name], value), name


def test_dask_failures_become_one_clear_error():
    from concurrent.futures import CancelledError

    from noisefs.execute.dask import DaskExecutor
    from noisefs.sim.batches import batch_for

    executor = DaskExecutor.__new__(DaskExecutor)
    executor.address = "tcp://head:8786"
    batch = batch_for(0, 100, 50, run_seed=1)
    killed = type("KilledWorker", (Exception,), {})("leaf x")
    for exc, words in [
        (killed, "trajectories 100-149: a task killed every Dask worker"),
        (CancelledError(), "dropped the tasks of trajectories 100-149"),
        (ModuleNotFoundError("No module named 'noisefs'"), "cannot import"),
    ]:
        error = executor._translate(exc, batch)
        assert isinstance(error, SchedulerError) and words in str(error), error
        assert error.exit_code == 3 and "\n" not in str(error)
    simulation = SimulationError("Aer refused")
    assert executor._translate(simulation, batch) is simulation
