"""Random small jobs, plain Aer and inside noisefs.managed side by side: the same outcome (both
succeed, or both raise the same exception type at the same call), and where the job was
batched, the same counts and memory and the same averaged saves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator

from tests.test_managed import averaged_rho, noise_model
from tests.test_managed_parity import assert_same_outcome, mode, side_by_side

THETA, PHI = Parameter("θ"), Parameter("φ")
NOISY = AerSimulator(noise_model=noise_model())
IDEAL = AerSimulator()

GOOD_SHOTS = [1, 5, 17, 17.0, 30.5, np.int64(9), np.uint64(12)]
ODD_SHOTS = [0, -1, 2**64]  # no shot (Aer runs it), and two Aer rejects
SEEDS = [0, 7, -1, 2**63 - 1, -(2**63), 1.5, np.uint64(3), np.int64(-4)]


@st.composite
def jobs(draw):
    n = draw(st.integers(1, 3))
    qc = QuantumCircuit(n, n)
    uses_theta = draw(st.booleans())
    for _ in range(draw(st.integers(1, 4))):
        q = draw(st.integers(0, n - 1))
        gate = draw(st.sampled_from(["h", "x", "rx", "cx"] if n > 1 else ["h", "x", "rx"]))
        if gate == "rx":
            qc.rx(THETA if uses_theta else draw(st.floats(0, 3.0)), q)
        elif gate == "cx":
            qc.cx(q, (q + 1) % n)
        else:
            getattr(qc, gate)(q)
    if draw(st.booleans()):  # a mid-circuit measurement, then a gate on its qubit
        q = draw(st.integers(0, n - 1))
        qc.measure(q, q)
        qc.rx(0.7, q)
    for save in draw(st.sets(st.sampled_from(["dm", "sv", "zexp", "probs"]), max_size=2)):
        if save == "dm":
            qc.save_density_matrix(label="dm")
        elif save == "sv":
            qc.save_statevector(label="sv", pershot=True)
        elif save == "zexp":
            qc.save_expectation_value(SparsePauliOp("Z" * n), range(n), label="zexp")
        else:
            qc.save_probabilities(label="probs")
    qc.measure(range(n), range(n))
    binds = None
    if uses_theta or draw(st.booleans()):
        values = draw(st.lists(st.floats(0, 3.0), min_size=1, max_size=3))
        good = [[{THETA: values}], [{THETA: values, PHI: values + [0.5]}]]  # PHI: not in it
        bad = [
            [{THETA: values}, {THETA: values}],  # one bind too many
            {THETA: values},  # a dict, not a list
            [{THETA: values[0]}],  # a scalar, not a list
        ]
        binds = draw(st.sampled_from(good if draw(st.integers(0, 3)) else bad))
    circuits = qc if draw(st.booleans()) else [qc, qc.copy()]
    if isinstance(circuits, list) and isinstance(binds, list) and len(binds) == 1:
        binds = draw(st.sampled_from([binds, binds * 2]))
    options = {
        "shots": draw(st.sampled_from(GOOD_SHOTS if draw(st.integers(0, 4)) else ODD_SHOTS)),
        "seed_simulator": draw(st.sampled_from(SEEDS)),
        "memory": draw(st.booleans()),
    }
    sim = NOISY if draw(st.integers(0, 3)) else IDEAL
    return sim, circuits, binds, options, draw(st.integers(1, 8))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Aer's own, for implicit casts
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(job=jobs())
def test_random_jobs_behave_as_plain_aer(job, arena_root, tmp_path):
    sim, circuits, binds, options, batch = job
    scope_kwargs = {"root": arena_root, "spill_dir": tmp_path / "spill", "quota": "8MiB"}
    plain, wrapped = side_by_side(sim, circuits, binds, scope_kwargs, batch=batch, **options)
    assert_same_outcome(plain, wrapped)
    event(f"raised at {plain.where}" if wrapped.result is None else mode(wrapped))
    if wrapped.result is None or mode(wrapped) != "batched":
        return
    ref, got = plain.result, wrapped.result
    for k in range(len(ref.results)):
        a, b = ref.data(k), got.data(k)
        assert a.keys() == b.keys()
        for label in ("dm", "zexp", "probs"):
            if label in a:
                np.testing.assert_allclose(np.asarray(b[label]), np.asarray(a[label]), atol=1e-8)
        if "sv" in a:
            np.testing.assert_allclose(np.asarray(b["sv"]), averaged_rho(a["sv"]), atol=1e-8)
