"""Physics with an independent judge: exact numpy channels instead of Aer's own average."""

from __future__ import annotations

import numpy as np

import noisefs
from tests import circuits

X = np.array([[0, 1], [1, 0]], dtype=complex)
SX = np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]], dtype=complex) / 2


def relax(rho: np.ndarray, t: float, t1: float, t2: float) -> np.ndarray:
    """Exact thermal relaxation of one qubit towards |0⟩ for a time t."""
    decay = np.exp(-t / t1)
    out = rho.copy()
    out[1, 1] = rho[1, 1] * decay
    out[0, 0] = 1 - out[1, 1]
    out[0, 1] = rho[0, 1] * np.exp(-t / t2)
    out[1, 0] = rho[1, 0] * np.exp(-t / t2)
    return out


def noisy_gate(rho, unitary, p, t, t1, t2):
    rho = unitary @ rho @ unitary.conj().T
    rho = (1 - p) * rho + p * np.eye(2) / 2
    return relax(rho, t, t1, t2)


def expected_z(gates, p, t, t1, t2) -> list[float]:
    rho = np.array([[1, 0], [0, 0]], dtype=complex)
    zs = [1.0]
    for gate in gates:
        rho = noisy_gate(rho, gate, p, t, t1, t2)
        zs.append(float((rho[0, 0] - rho[1, 1]).real))
    return zs


NOISE = dict(t1="2us", t2="3us", time_1q="150ns", p1=0.03)
T1, T2, T, P = 2e-6, 3e-6, 150e-9, 0.03


def run_one_qubit(tmp_path, run_kwargs, body: list[str], name: str):
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\n' + "".join(
        f"{g} q[0];\n" for g in body
    )
    path = circuits.write(tmp_path, name, text)
    return noisefs.run(path, trajectories=3000, seed=17, snapshots="every:1", **NOISE, **run_kwargs)


def assert_within_4_sigma(result, expected):
    steps = result.steps
    assert len(steps) == len(expected) - 1  # one snapshot after every gate (step 0 is not taken)
    for k, step in enumerate(steps):
        mean, err = result.z_mean[k, 0], result.z_stderr[k, 0]
        assert abs(mean - expected[step]) <= 4 * err + 1e-9, (step, mean, expected[step], err)


def test_x_flip_chain_matches_exact_t1_channel(tmp_path, run_kwargs):
    result = run_one_qubit(tmp_path, run_kwargs, ["x"] * 8, "flips.qasm")
    expected = expected_z([X] * 8, P, T, T1, T2)
    assert_within_4_sigma(result, expected)
    # the decay is visible: after 8 flips the qubit is clearly not back at |0>
    assert result.z_mean[-1, 0] < 0.8


def test_ramsey_echo_sequence_matches_exact_t2_channel(tmp_path, run_kwargs):
    body = ["sx"] + ["x"] * 6 + ["sx"]
    result = run_one_qubit(tmp_path, run_kwargs, body, "ramsey.qasm")
    expected = expected_z([SX] + [X] * 6 + [SX], P, T, T1, T2)
    assert_within_4_sigma(result, expected)


def test_repetition_code_corrects_its_error_without_noise(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "rep.qasm", circuits.REPETITION)
    quiet = dict(p1=0, p2=0, t1="1s", t2="1s")
    result = noisefs.run(path, trajectories=16, seed=1, snapshots="final", **quiet, **run_kwargs)
    # data qubits back in |111>, both syndrome ancillas flipped (syndrome 3 -> fix d[1])
    assert np.allclose(result.z_mean[-1], [-1, -1, -1, -1, -1], atol=1e-6)
    uncorrected = circuits.REPETITION.split("if(")[0]
    path = circuits.write(tmp_path, "rep_nofix.qasm", uncorrected)
    broken = noisefs.run(path, trajectories=16, seed=1, snapshots="final", **quiet, **run_kwargs)
    assert np.allclose(broken.z_mean[-1][:3], [-1, 1, -1], atol=1e-6)
