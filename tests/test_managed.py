"""noisefs.managed against real Aer: wrapped vs unwrapped with the same seed, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import Result
from qiskit_aer import AerError, AerSimulator
from qiskit_aer.backends.aerbackend import AerBackend
from qiskit_aer.jobs import AerJob
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

import noisefs
from noisefs.aerscope import UnbatchableJob, active_scope, managed, unmanaged
from noisefs.errors import InputError


def noise_model(readout_only: bool = False) -> NoiseModel:
    model = NoiseModel()
    if not readout_only:
        model.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["h", "x", "sx", "rx"])
        model.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
    model.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]))
    return model


def dynamic_circuit() -> QuantumCircuit:
    """Saves at several points (reduced, conditional, inside control flow), mid-circuit
    measurement and a condition."""
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.save_statevector(label="sv", pershot=True)
    qc.save_density_matrix(label="dm")
    qc.save_density_matrix([2, 0], label="dm20")
    qc.save_probabilities(label="p")
    qc.save_expectation_value(SparsePauliOp("ZZI"), [0, 1, 2], label="zz")
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(2)
        qc.save_expectation_value(SparsePauliOp("ZII"), [0, 1, 2], label="in_if")
        qc.save_density_matrix([0, 2], label="dm_in_if")
    qc.cx(1, 2)
    qc.save_probabilities([1, 2], label="p12")
    qc.save_expectation_value(SparsePauliOp("IIZ"), [0, 1, 2], label="cz", conditional=True)
    qc.save_density_matrix(label="cdm", conditional=True)
    qc.save_density_matrix([1], label="dm1_pershot", pershot=True)
    qc.save_statevector(label="last")
    qc.measure([1, 2], [1, 2])
    return qc


def as_array(value):
    if isinstance(value, list) and value and hasattr(value[0], "data"):
        return [np.asarray(v) for v in value]
    return np.asarray(value)


def averaged_rho(states) -> np.ndarray:
    vectors = [np.asarray(s) for s in states]
    if vectors[0].ndim == 2:  # per-shot density matrices
        return np.mean(vectors, axis=0)
    return np.mean([np.outer(v, v.conj()) for v in vectors], axis=0)


PER_SHOT_STATES = {"sv", "dm1_pershot"}


def assert_same(ref: Result, got: Result, experiments: int) -> None:
    """Counts and memory identical, averages equal to 1e-8, per-shot states averaged."""
    assert isinstance(got, Result)
    for e in range(experiments):
        a, b = ref.data(e), got.data(e)
        assert sorted(a) == sorted(b)
        assert ref.get_counts(e) == got.get_counts(e) if "counts" in a else True
        assert ref.results[e].shots == got.results[e].shots
        assert ref.results[e].seed_simulator == got.results[e].seed_simulator
        for key, expected in a.items():
            actual = b[key]
            if key in ("counts", "memory"):
                assert actual == expected, key
            elif key in PER_SHOT_STATES:
                assert type(actual).__name__ == "DensityMatrix"
                np.testing.assert_allclose(np.asarray(actual), averaged_rho(expected), atol=1e-8)
            else:
                assert_close(actual, expected, key)


def assert_close(actual, expected, where) -> None:
    """Same type, same keys, values equal to 1e-8 (dicts: per key; also ProbDistribution)."""
    assert type(actual) is type(expected), where
    if isinstance(expected, dict):
        assert expected.keys() == actual.keys(), where
        for k in expected:
            assert_close(actual[k], expected[k], (where, k))
    else:
        np.testing.assert_allclose(as_array(actual), as_array(expected), atol=1e-8)


@pytest.fixture
def scope_kwargs(arena_root, tmp_path):
    return {"root": arena_root, "spill_dir": tmp_path / "spill", "quota": "8MiB"}


def test_saves_midcircuit_several_circuits(scope_kwargs):
    sim = AerSimulator(noise_model=noise_model())
    circuits = [dynamic_circuit(), dynamic_circuit().compose(QuantumCircuit(3, 3), front=True)]
    circuits[1].x(1)  # a different second circuit
    circuits[1].measure(1, 1)
    ref = sim.run(circuits, shots=250, seed_simulator=11, memory=True).result()
    with managed(batch=64, **scope_kwargs) as scope:
        job = sim.run(circuits, shots=250, seed_simulator=11, memory=True)
    got = job.result()  # after the scope exited
    assert_same(ref, got, 2)
    note = got.metadata["noisefs"]
    assert note["mode"] == "batched" and note["batches"] == 4 and note["seed_simulator"] == 11
    assert note["arena"]["snapshots"] > 0
    assert scope.stats()["batched_jobs"] == 1
    assert type(got.data(0)["dm20"]).__name__ == "DensityMatrix"
    assert np.asarray(got.data(0)["dm20"]).shape == (4, 4)
    assert job.status().name == "DONE" and job.job_id()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Aer's own, for shots=100.0
def test_parameter_binds_and_float_shots(scope_kwargs):
    theta = Parameter("θ")
    qc = QuantumCircuit(2, 2)
    qc.rx(theta, 0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.save_density_matrix(label="dm")
    qc.save_expectation_value(SparsePauliOp("ZZ"), [0, 1], label="zz")
    qc.measure(1, 1)
    binds = [{theta: [0.1, 1.2, 2.5]}]
    sim = AerSimulator(noise_model=noise_model())
    ref = sim.run(qc, parameter_binds=binds, shots=100, seed_simulator=3, memory=True).result()
    with managed(batch=30, **scope_kwargs):
        got = sim.run(qc, parameter_binds=binds, shots=100.0, seed_simulator=3, memory=True)
    got = got.result()
    assert_same(ref, got, 3)
    assert got.metadata["noisefs"]["batches"] == 4


def test_measurement_sampled_circuits_pass_through(scope_kwargs):
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.rx(0.3, 2)  # not Clifford: the statevector method
    qc.measure_all()
    for sim in (AerSimulator(), AerSimulator(noise_model=noise_model(readout_only=True))):
        ref = sim.run(qc, shots=500, seed_simulator=5, memory=True).result()
        with managed(batch=50, **scope_kwargs) as scope:
            got = sim.run(qc, shots=500, seed_simulator=5, memory=True).result()
        assert ref.get_counts() == got.get_counts()
        assert ref.get_memory() == got.get_memory()
        assert got.metadata["noisefs"]["mode"] == "passthrough"
        assert "measurement sampling" in got.metadata["noisefs"]["reason"]
        assert scope.stats()["passthroughs"]


def test_automatic_method_density_matrix_passes_through(scope_kwargs):
    # noise and more shots than 2^3: Aer's automatic method picks density_matrix
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.save_density_matrix(label="dm")
    qc.measure_all()
    sim = AerSimulator(noise_model=noise_model())
    ref = sim.run(qc, shots=200, seed_simulator=9).result()
    with managed(batch=50, **scope_kwargs):
        got = sim.run(qc, shots=200, seed_simulator=9).result()
    assert ref.results[0].metadata["method"] == "density_matrix"
    assert got.metadata["noisefs"]["mode"] == "passthrough"
    assert ref.get_counts() == got.get_counts()
    np.testing.assert_allclose(np.asarray(got.data()["dm"]), np.asarray(ref.data()["dm"]))

    # a gate on a measured qubit that no result needs: Aer drops it, and still samples
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.rx(0.3, 1)
    qc.measure([0, 1], [0, 1])
    qc.x(0)
    ref = sim.run(qc, shots=200, seed_simulator=9, memory=True).result()
    assert ref.results[0].metadata["method"] == "density_matrix"
    with managed(batch=50, **scope_kwargs):
        got = sim.run(qc, shots=200, seed_simulator=9, memory=True).result()
    assert got.metadata["noisefs"]["mode"] == "passthrough"
    assert ref.get_memory() == got.get_memory()


def test_seed_drawn_and_recorded(scope_kwargs):
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.rx(0.4, 0)  # after a measurement of its qubit: no sampling, statevector
    qc.measure(0, 1)
    sim = AerSimulator(noise_model=noise_model())
    with managed(batch=40, **scope_kwargs):
        got = sim.run(qc, shots=120, memory=True).result()
    note = got.metadata["noisefs"]
    assert note["seed_drawn"] is True
    ref = sim.run(qc, shots=120, memory=True, seed_simulator=note["seed_simulator"]).result()
    assert ref.get_memory() == got.get_memory()


def test_options_and_aers_own_errors(scope_kwargs):
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    sim = AerSimulator(noise_model=noise_model())
    with managed(**scope_kwargs) as scope:  # passed through whole, never refused
        got = sim.run(qc, shots=10, seed_simulator=1, shot_branching_enable=True).result()
    assert got.metadata["noisefs"]["mode"] == "passthrough"
    assert scope.stats()["passthroughs"] == [got.metadata["noisefs"]["reason"]]
    assert issubclass(UnbatchableJob, InputError)  # kept for code that catches it
    with pytest.raises(InputError):
        managed(batch=0)
    assert isinstance(noisefs.managed(batch=3), managed)  # the public name builds the object
    theta = Parameter("t")
    unbound = QuantumCircuit(1, 1)
    unbound.rx(theta, 0)
    unbound.measure(0, 0)
    with managed(**scope_kwargs):
        job = sim.run(unbound, shots=10)  # Aer's own error, from result() as with Aer
    with pytest.raises(AerError, match="parameter_binds"):
        job.result()


def test_exception_propagates_and_arena_is_clean(scope_kwargs, arena_root):
    class Boom(Exception):
        pass

    boom = Boom("inside")
    qc = dynamic_circuit()
    sim = AerSimulator(noise_model=noise_model())

    @managed(batch=32, **scope_kwargs)
    def experiment():
        sim.run(qc, shots=64, seed_simulator=1).result()
        raise boom

    with pytest.raises(Boom) as caught:
        experiment()
    assert caught.value is boom
    assert list((arena_root / "data").iterdir()) == []  # every snapshot released
    # outside any scope Aer is untouched, and the original stays reachable
    assert isinstance(sim.run(qc, shots=4), AerJob)
    assert AerBackend.run.__wrapped__.__module__ == "qiskit_aer.backends.aerbackend"
    assert active_scope() is None
    assert noisefs.managed is managed  # the public name is the class itself


def test_worker_thread_nesting_and_concurrent_scopes(scope_kwargs):
    qc = dynamic_circuit()
    sim = AerSimulator(noise_model=noise_model())

    def batch_of(job) -> int:
        return job.result().metadata["noisefs"]["batch"]

    @managed(batch=40, **scope_kwargs)
    def experiment():
        with ThreadPoolExecutor(2) as pool:  # a library's own worker threads
            from_worker = pool.submit(lambda: sim.run(qc, shots=60, seed_simulator=2)).result()
        with managed(batch=16, **scope_kwargs):
            inner = sim.run(qc, shots=60, seed_simulator=2)
        outer = sim.run(qc, shots=60, seed_simulator=2)
        with unmanaged():
            untouched = sim.run(qc, shots=60, seed_simulator=2)
        return from_worker, inner, outer, untouched

    from_worker, inner, outer, untouched = experiment()
    assert batch_of(from_worker) == 40 and batch_of(inner) == 16 and batch_of(outer) == 40
    assert isinstance(untouched, AerJob)
    ref = untouched.result()
    for job in (from_worker, inner, outer):
        assert_same(ref, job.result(), 1)

    @managed(batch=20, **scope_kwargs)
    def two_at_once():  # two worker threads fold into one scope's arena at the same time
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(lambda s: sim.run(qc, shots=60, seed_simulator=s), [2, 3]))

    for job, seed in zip(two_at_once(), [2, 3], strict=True):
        assert batch_of(job) == 20
        assert_same(sim.run(qc, shots=60, seed_simulator=seed).result(), job.result(), 1)

    seen: dict[str, int] = {}

    def in_thread(name: str, batch: int) -> None:
        with managed(batch=batch, **scope_kwargs):
            seen[name] = batch_of(sim.run(qc, shots=50, seed_simulator=4))

    threads = [threading.Thread(target=in_thread, args=(f"t{b}", b)) for b in (10, 25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"t10": 10, "t25": 25}


# Samples the arena's bytes (du) and inodes (find) and the test process's RSS from a separate
# process, until the stop file appears: Aer holds the GIL while it simulates, so a thread of
# the test process would only sample between batches.
SAMPLER = r"""
import os, subprocess, sys
root, out, stop, pid = sys.argv[1:]

def rss():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

with open(out, "w") as f:
    while not os.path.exists(stop):
        du = subprocess.run(["du", "-s", "--block-size=1", root], capture_output=True, text=True)
        found = subprocess.run(["find", root], capture_output=True, text=True)
        nbytes = int(du.stdout.split()[0]) if du.stdout.strip() else 0
        files = max(0, len(found.stdout.splitlines()) - 1)
        f.write(f"{nbytes} {files} {rss()}\n")
        f.flush()
"""


@contextlib.contextmanager
def sampled(root, where):
    """Yields the list the sampler's (bytes, inodes, rss) rows land in once the block ends."""
    out, stop = where / f"samples-{uuid.uuid4().hex[:8]}", where / f"stop-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-c", SAMPLER, str(root), str(out), str(stop), str(os.getpid())]
    sampler = subprocess.Popen(args)
    rows: list[tuple[int, int, int]] = []
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first sample is in before the job starts
        yield rows
    finally:
        stop.touch()
        sampler.wait(30)
    rows.extend(tuple(map(int, line.split())) for line in out.read_text().splitlines())


def test_arena_bound_holds_for_many_per_shot_saves(arena_root, tmp_path):
    quota, max_files = 1 << 20, 24
    qc = QuantumCircuit(5)
    for step in range(3):
        qc.h(range(5))
        qc.cx(0, 1)
        qc.save_statevector(label=f"s{step}", pershot=True)
    sim = AerSimulator(noise_model=noise_model())
    with managed(
        batch=200, root=arena_root, quota=quota, max_files=max_files, spill_dir=tmp_path / "s"
    ):
        with sampled(arena_root, tmp_path) as samples:
            result = sim.run(qc, shots=3000, seed_simulator=8).result()
    note = result.metadata["noisefs"]
    assert note["batches"] == 15 and note["arena"]["snapshot_bytes"] == 3000 * 3 * 32 * 16
    assert len(samples) >= 20, samples  # taken while Aer ran, not only between batches
    assert max(b for b, _, _ in samples) <= quota
    assert max(f for _, f, _ in samples) <= max_files
    assert type(result.data()["s2"]).__name__ == "DensityMatrix"


def test_peak_rss_does_not_grow_with_shots(arena_root, tmp_path):
    """Ten times the shots, the same peak RSS: per-shot states never pile up in RAM (5000
    shots' states kept would add ~10 MiB; one batch of all of them, with Aer's copies, ~45)."""
    qc = QuantumCircuit(7)
    qc.h(range(7))
    qc.cx(0, 1)
    qc.save_statevector(label="s", pershot=True)
    sim = AerSimulator(noise_model=noise_model())
    peaks = []
    with managed(batch=200, root=arena_root, quota=1 << 20, spill_dir=tmp_path / "s"):
        for shots in (500, 5000):
            with sampled(arena_root, tmp_path) as samples:
                result = sim.run(qc, shots=shots, seed_simulator=8).result()
            assert result.metadata["noisefs"]["batches"] == shots // 200 + (shots % 200 > 0)
            assert type(result.data()["s"]).__name__ == "DensityMatrix"
            del result
            assert len(samples) >= 5
            peaks.append(max(r for _, _, r in samples))
    assert peaks[1] <= peaks[0] + (6 << 20), peaks  # measured: +1 MiB; states kept: +10 MiB


def test_every_save_subtype(scope_kwargs):
    """probabilities_dict, expectation value variance, amplitudes (squared), accumulated,
    per-shot and conditional variants of each, single saves."""
    zz = SparsePauliOp("ZZI")
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.rx(0.3, 2)
    qc.save_probabilities_dict(label="pd")
    qc.save_expectation_value_variance(zz, [0, 1, 2], label="ev")
    qc.save_amplitudes_squared([0, 3, 5], label="a2")
    qc.save_expectation_value(zz, [0, 1, 2], label="acc", unnormalized=True)
    qc.save_expectation_value(zz, [0, 1, 2], label="ps", pershot=True)
    qc.measure(0, 0)
    qc.save_probabilities_dict([1], label="cpd", conditional=True)
    qc.save_expectation_value(zz, [0, 1, 2], label="cacc", unnormalized=True, conditional=True)
    qc.save_expectation_value(zz, [0, 1, 2], label="cps", pershot=True, conditional=True)
    qc.save_statevector(label="csv", conditional=True)
    qc.save_amplitudes([0, 1], label="amp")
    qc.x(0)
    qc.measure(0, 1)
    sim = AerSimulator(noise_model=noise_model())
    ref = sim.run(qc, shots=120, seed_simulator=4, memory=True).result()
    with managed(batch=50, **scope_kwargs):
        got = sim.run(qc, shots=120, seed_simulator=4, memory=True).result()
    assert got.metadata["noisefs"]["batches"] == 3
    assert_same(ref, got, 1)


def test_runtime_parameter_bind_and_from_backend(scope_kwargs):
    from qiskit import transpile
    from qiskit.providers.fake_provider import GenericBackendV2

    theta = Parameter("t")
    qc = QuantumCircuit(2, 2)
    qc.rx(theta, 0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.save_density_matrix(label="dm")
    qc.measure(1, 1)
    binds = [{theta: [0.1, 0.9, 2.0]}]
    sim = AerSimulator(noise_model=noise_model(), runtime_parameter_bind_enable=True)
    ref = sim.run(qc, parameter_binds=binds, shots=90, seed_simulator=3, memory=True).result()
    with managed(batch=25, **scope_kwargs):
        got = sim.run(qc, parameter_binds=binds, shots=90, seed_simulator=3, memory=True)
    assert_same(ref, got.result(), 3)

    sim = AerSimulator.from_backend(GenericBackendV2(4, seed=1))
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.rx(0.2, 0)
    qc.cx(1, 2)
    qc.measure([0, 1, 2], [0, 1, 2])
    qc = transpile(qc, sim, seed_transpiler=1)
    ref = sim.run(qc, shots=80, seed_simulator=5, memory=True).result()
    with managed(batch=25, **scope_kwargs):
        got = sim.run(qc, shots=80, seed_simulator=5, memory=True).result()
    assert got.metadata["noisefs"]["batches"] == 4
    assert_same(ref, got, 1)


def test_reduced_save_keeps_aers_qubit_truncation(scope_kwargs):
    """Aer drops operations that no result depends on (qubit 2 here) and so never draws their
    noise; the factored rewrite of save_density_matrix must not bring them back."""
    qc = QuantumCircuit(3, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.h(2)
    qc.rx(0.3, 2)
    qc.measure(0, 0)
    qc.rx(0.2, 0)
    qc.save_density_matrix([1, 0], label="dm")
    qc.measure(1, 1)
    sim = AerSimulator(noise_model=noise_model())
    ref = sim.run(qc, shots=60, seed_simulator=4, memory=True).result()
    assert ref.results[0].metadata["active_input_qubits"] == [0, 1]
    with managed(batch=25, **scope_kwargs):
        got = sim.run(qc, shots=60, seed_simulator=4, memory=True).result()
    assert_same(ref, got, 1)


def test_worker_that_got_the_scope_as_it_closed_passes_through(scope_kwargs, arena_root):
    """A worker thread gets the scope from active_scope() (the process-wide fallback), then
    the scope exits before the worker's run_in_scope: the job must run as outside every scope,
    not batched into a fresh arena that nobody closes."""
    from noisefs.aerscope.intercept import run_in_scope
    from noisefs.sim.aer import original_run

    qc = dynamic_circuit()  # per-shot saves: a batched run would open the scope's arena
    sim = AerSimulator(noise_model=noise_model())
    got_scope, scope_closed = threading.Event(), threading.Event()
    seen: dict = {}

    def worker() -> None:
        seen["scope"] = active_scope()  # what the intercepted run does first
        got_scope.set()
        scope_closed.wait(30)
        seen["job"] = run_in_scope(
            seen["scope"], sim, qc, None, {"shots": 40, "seed_simulator": 6}, original_run()
        )

    thread = threading.Thread(target=worker)
    with managed(batch=16, **scope_kwargs) as scope:
        thread.start()
        assert got_scope.wait(30)
    scope_closed.set()
    thread.join(60)
    assert seen["scope"] is scope and not scope.is_open
    job = seen["job"]
    assert isinstance(job, AerJob)  # Aer's own job, untouched
    assert scope._arena is None and "arena" not in scope.stats()
    assert not arena_root.exists()  # no arena was ever opened
    ref, got = sim.run(qc, shots=40, seed_simulator=6).result(), job.result()
    assert got.get_counts() == ref.get_counts()
    assert len(got.data()["sv"]) == 40  # per-shot states as Aer returns them, not averaged


def test_asyncio_tasks_exit_one_object_out_of_order(scope_kwargs):
    """Two tasks enter the same managed object, the first to enter exits first: each exit
    closes its own task's scope, and the other task's jobs stay batched in its own."""
    qc = dynamic_circuit()
    sim = AerSimulator(noise_model=noise_model())
    shared = managed(batch=16, **scope_kwargs)
    seen: dict = {}

    async def main() -> None:
        a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def task_a() -> None:
            with shared as scope:
                seen["a"] = scope
                a_in.set()
                await b_in.wait()  # b enters after a ...
            a_out.set()  # ... and a exits first

        async def task_b() -> None:
            await a_in.wait()
            with shared as scope:
                seen["b"] = scope
                b_in.set()
                await a_out.wait()
                seen["b_open_after_a"] = scope.is_open
                seen["active_in_b"] = active_scope()
                seen["job"] = sim.run(qc, shots=40, seed_simulator=7)

        await asyncio.gather(task_a(), task_b())

    asyncio.run(main())
    a, b = seen["a"], seen["b"]
    assert a is not b and not a.is_open and not b.is_open
    assert seen["b_open_after_a"] and seen["active_in_b"] is b
    assert b.stats()["batched_jobs"] == 1 and a.stats()["batched_jobs"] == 0
    got = seen["job"].result()
    assert got.metadata["noisefs"]["batches"] == 3
    assert_same(sim.run(qc, shots=40, seed_simulator=7).result(), got, 1)
    assert active_scope() is None


def test_memory_keeps_shot_order_over_many_batches(scope_kwargs):
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.rx(0.4, 0)  # after a measurement of its qubit: shot by shot
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    sim = AerSimulator(noise_model=noise_model())
    ref = sim.run(qc, shots=600, seed_simulator=12, memory=True).result()
    with managed(batch=5, **scope_kwargs):
        got = sim.run(qc, shots=600, seed_simulator=12, memory=True).result()
    assert got.metadata["noisefs"]["batches"] == 120
    assert got.get_memory() == ref.get_memory()
    assert got.get_counts() == ref.get_counts()


def test_original_run_is_aers_under_another_wrapper():
    """One original_run (noisefs.sim.aer's), and it unwraps every level: a profiler's
    functools.wraps wrapper over the interception still leads to Aer's own run."""
    import functools

    from noisefs.aerscope import intercept
    from noisefs.sim import aer

    intercept.install()
    intercepted = AerBackend.run

    @functools.wraps(intercepted)
    def profiled(self, *args, **kwargs):
        return intercepted(self, *args, **kwargs)

    AerBackend.run = profiled
    try:
        for original_run in (intercept.original_run, aer.original_run):
            run = original_run()
            assert run.__module__ == "qiskit_aer.backends.aerbackend"
            assert not hasattr(run, "__wrapped__") and run is not intercepted
    finally:
        AerBackend.run = intercepted
    assert intercept.original_run is aer.original_run
