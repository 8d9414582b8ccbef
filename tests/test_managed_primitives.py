"""Aer's EstimatorV2/SamplerV2 and qiskit's BackendSamplerV2/BackendEstimatorV2 inside
noisefs.managed: identical to the same primitives run unwrapped."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import BackendEstimatorV2, BackendSamplerV2
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from noisefs.aerscope import managed
from tests.test_managed import noise_model


def parametrised() -> tuple[QuantumCircuit, Parameter]:
    """7 qubits: at up to 128 shots Aer's automatic method stays statevector (above, with
    noise, it picks density_matrix, and managed passes the job through)."""
    theta = Parameter("θ")
    qc = QuantumCircuit(7)
    qc.rx(theta, 0)
    for q in range(6):
        qc.cx(q, q + 1)
    qc.rx(0.3, 1)
    return qc, theta


def measured() -> QuantumCircuit:
    qc, _ = parametrised()
    qc = qc.assign_parameters([0.7])
    qc.measure_all()
    qc.cx(0, 1)  # after the measurement: Aer runs shot by shot
    qc.measure_all(add_bits=False)
    return qc


def test_aer_estimator_v2(arena_root):
    qc, theta = parametrised()
    obs = SparsePauliOp.from_list([("IIIIIZZ", 1.0), ("ZIIIIXI", 0.5)])
    pub = (qc, [obs], [[0.1], [1.3]])

    def run():
        options = {
            "backend_options": {"noise_model": noise_model()},
            "run_options": {"seed_simulator": 21, "shots": 120},
        }
        return EstimatorV2(options=options).run([pub]).result()[0].data.evs

    ref = run()
    with managed(batch=64, root=arena_root) as scope:
        got = run()
    np.testing.assert_allclose(got, ref, atol=1e-8)
    assert scope.stats()["batched_jobs"] == 1


def test_aer_sampler_v2(arena_root):
    def run():
        options = {"backend_options": {"noise_model": noise_model()}}
        sampler = SamplerV2(seed=13, options=options)
        return sampler.run([measured()], shots=200).result()[0].data.meas

    ref = run()
    with managed(batch=64, root=arena_root) as scope:
        got = run()
    assert np.array_equal(got.array, ref.array)
    assert scope.stats()["batched_jobs"] == 1


def test_backend_primitives_over_aer_simulator(arena_root):
    backend = AerSimulator(noise_model=noise_model())

    def run():
        sampler = BackendSamplerV2(backend=backend, options={"seed_simulator": 17})
        bits = sampler.run([measured()], shots=150).result()[0].data.meas
        qc, _ = parametrised()
        qc = qc.assign_parameters([0.4])
        estimator = BackendEstimatorV2(backend=backend, options={"seed_simulator": 5})
        evs = estimator.run([(qc, SparsePauliOp("ZZIIIII"))], precision=0.1).result()[0].data.evs
        return bits, evs

    ref_bits, ref_evs = run()
    with managed(batch=40, root=arena_root) as scope:
        bits, evs = run()
    assert np.array_equal(bits.array, ref_bits.array)
    np.testing.assert_allclose(evs, ref_evs, atol=1e-8)
    assert scope.stats()["batched_jobs"] == 2
