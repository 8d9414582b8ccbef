"""The pipeline's seams: the executor protocol (arena keys or partial sums), circuits given
as files, text or QuantumCircuits, DensityMatrix out, and batch sizes chosen by cost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from qiskit import qasm2
from qiskit.quantum_info import DensityMatrix, partial_trace, state_fidelity

import noisefs
from noisefs.aggregate import Aggregator
from noisefs.execute import Executor, make_executor
from noisefs.execute.local import LocalExecutor
from noisefs.execute.protocol import BatchDone
from noisefs.execute.sizing import CostSizer
from noisefs.oracle import aer_reference, aer_reference_steps
from noisefs.pipeline import parts
from noisefs.result import Result
from noisefs.sim.aer import simulate
from tests import circuits

TOL = 1e-8


class PartialSumsExecutor:
    """A real executor whose batches come back as partial sums, as from a machine that
    cannot reach this arena: Aer runs in threads, each batch folded into its own sums.
    ``reverse`` holds each pair of batches back and completes them in reverse order."""

    needs_adopt = False
    completed = 0

    def __init__(self, job, num_qubits: int, num_steps: int, reverse: bool) -> None:
        self._job, self._n, self._s = job, num_qubits, num_steps
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._reverse = reverse
        self._held: list[tuple[Future, Future]] = []
        self.slots = 2

    def preferred_sizer(self):
        return None

    def meta(self) -> dict:
        return {"kind": "partial-sums"}

    def _sums(self, batch) -> BatchDone:
        aggregator = Aggregator(self._n, self._s)
        for step, states in enumerate(simulate(self._job, batch)):
            aggregator.fold_states(step, states)
        return BatchDone(batch, sums=aggregator.state())

    def submit(self, batch) -> Future:
        outer: Future = Future()
        inner = self._pool.submit(self._sums, batch)
        self._held.append((outer, inner))
        if not self._reverse or len(self._held) == 2 or batch.stop == 96:
            for held_outer, held_inner in reversed(self._held):
                held_outer.set_result(held_inner.result())
            self._held.clear()
        return outer

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def test_every_executor_satisfies_the_protocol(arena_root):
    from noisefs.arena import Arena
    from noisefs.sim.aer import SimulationJob

    with Arena(root=arena_root, quota="8MiB") as arena:
        job = SimulationJob(None, (), None, "factored", "r")
        local = make_executor(arena, job)
        processes = make_executor(arena, job, workers=2)
        try:
            for executor in (local, processes, PartialSumsExecutor(job, 1, 1, False)):
                assert isinstance(executor, Executor)
            assert isinstance(local, LocalExecutor) and not local.needs_adopt
            assert processes.needs_adopt and processes.slots == 4
        finally:
            local.shutdown()
            processes.shutdown()


@pytest.mark.parametrize("reverse", [False, True])
def test_partial_sums_from_an_executor_equal_aer_whatever_their_order(
    tmp_path, run_kwargs, monkeypatch, reverse
):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)

    def sums_executor(arena, job, **kwargs):
        return PartialSumsExecutor(job, 4, len(job.labels), reverse)

    monkeypatch.setattr(parts, "make_executor", sums_executor)
    result = noisefs.run(
        path, trajectories=96, seed=11, batch=16, snapshots="barriers", **run_kwargs
    )
    monkeypatch.undo()
    assert result.trajectories == 96
    assert np.max(np.abs(result.rho - aer_reference_steps(result.meta, result.steps))) <= TOL
    with_keys = noisefs.run(path, trajectories=96, seed=11, batch=16, **run_kwargs)
    assert np.max(np.abs(result.rho - with_keys.rho)) <= 1e-12


def test_a_circuit_as_file_text_or_quantumcircuit_gives_the_same_result(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    common = dict(trajectories=40, seed=3, batch=8, **run_kwargs)
    from_file = noisefs.run(path, **common)
    from_text = noisefs.run(circuits.GHZ4, **common)
    from_circuit = noisefs.run(qasm2.loads(circuits.GHZ4), **common)
    for other in (from_text, from_circuit):
        assert np.array_equal(other.rho, from_file.rho)
        assert np.array_equal(other.z_stderr, from_file.z_stderr)
        assert other.meta["executed_qasm"] == from_file.meta["executed_qasm"]
    assert np.max(np.abs(from_circuit.rho[-1] - aer_reference(from_circuit.meta))) <= TOL


def test_density_matrix_is_a_qiskit_density_matrix(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    result = noisefs.run(path, trajectories=64, seed=2, batch=16, **run_kwargs)
    state = result.density_matrix()
    assert isinstance(state, DensityMatrix) and state.num_qubits == 4
    assert np.array_equal(state.data, result.rho[-1])
    assert abs(state.trace() - 1) < 1e-12
    ideal = DensityMatrix.from_label("0000")  # GHZ: fidelity with |0000> is about 1/2
    assert 0.3 < state_fidelity(state, ideal) < 0.7
    assert partial_trace(state, [2, 3]).dim == 4


def test_cost_sizer_grows_batches_to_make_the_fixed_cost_small():
    sizer = CostSizer(cap=100_000, first=32)
    sizes = []
    for _ in range(8):
        size = sizer.next_size()
        sizes.append(size)
        sizer.observe(size, 0.010 + size * 1e-5)  # 10 ms per job, 10 us per trajectory
    assert sizes[0] == 32
    assert sizes == sorted(sizes) and sizes[-1] >= 0.98 * 0.010 / (0.02 * 1e-5)
    assert sizes[-1] <= 100_000


def test_cost_sizer_does_not_shrink_when_the_fixed_cost_is_lost_in_the_noise():
    # job times on a line through the origin (no fixed cost seen): the sizer once answered
    # a batch of 1 trajectory here
    sizer = CostSizer(cap=100_000, first=32)
    for size in (32, 64, 256):
        sizer.observe(size, size * 1e-4)
    assert sizer.next_size() >= 256


def test_cost_sizer_respects_its_cap():
    sizer = CostSizer(cap=50, first=32)
    for _ in range(5):
        sizer.observe(sizer.next_size(), 1.0)
    assert sizer.next_size() == 50


def test_automatic_batches_equal_aer(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    result = noisefs.run(path, trajectories=3000, seed=8, snapshots="barriers", **run_kwargs)
    assert result.meta["batch_sizing"] == "cost" and result.meta["batches"] >= 2
    assert result.meta["batch"] > 32  # grew past the first batch
    assert np.max(np.abs(result.rho - aer_reference_steps(result.meta, result.steps))) <= TOL


@pytest.mark.slow
def test_automatic_batches_resumed_after_sigkill_equal_aer(tmp_path, arena_root):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    out = tmp_path / "qft.noisefs.npz"
    checkpoint = tmp_path / "qft.noisefs.npz.ckpt.npz"
    args = [sys.executable, "-m", "noisefs", "run", str(path), "-k", "12000", "--seed", "21",
            "-o", str(out), "--quiet", "--checkpoint-interval", "0.1", "--snapshots", "every:3",
            "--arena", str(arena_root), "--spill", str(tmp_path / "spill"), "--quota", "64MiB"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert checkpoint.exists(), "no checkpoint appeared"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    result = Result.load(out)
    assert result.trajectories == 12000 and result.meta["batch_sizing"] == "cost"
    assert np.max(np.abs(result.rho - aer_reference_steps(result.meta, result.steps))) <= TOL
