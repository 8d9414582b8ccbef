"""noisefs.sim.noise: the model equals the noise rule (docs/contract.md) (checked against an independent numpy
computation), validation, calibration files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import Operator
from qiskit_aer import AerSimulator

from noisefs.errors import InputError, NoiseParameterError
from noisefs.sim.noise import NoiseParams, build_noise_model, load_calibration, noise_params

# ------------------------------------------------------------- independent reference (numpy)


def embed(op: np.ndarray, qubits: list[int], n: int) -> np.ndarray:
    """``op`` on ``qubits`` (op's qubit 0 = qubits[0], little-endian) as a 2^n operator."""
    k = len(qubits)
    full = np.zeros((2**n, 2**n), dtype=complex)
    for col in range(2**n):
        sub_col = sum(((col >> q) & 1) << j for j, q in enumerate(qubits))
        rest = col & ~sum(1 << q for q in qubits)
        for sub_row in range(2**k):
            amp = op[sub_row, sub_col]
            if amp == 0:
                continue
            row = rest | sum(((sub_row >> j) & 1) << q for j, q in enumerate(qubits))
            full[row, col] += amp
    return full


def relaxation_kraus(t1: float, t2: float, t: float) -> list[np.ndarray]:
    """Amplitude damping (T1) then pure dephasing so that coherences decay as exp(-t/T2)."""
    gamma = 1 - math.exp(-t / t1)
    lam = math.exp(-t / t2) / math.sqrt(1 - gamma)
    a0 = np.array([[1, 0], [0, math.sqrt(1 - gamma)]])
    a1 = np.array([[0, math.sqrt(gamma)], [0, 0]])
    p0 = math.sqrt((1 + lam) / 2) * np.eye(2)
    p1 = math.sqrt((1 - lam) / 2) * np.diag([1, -1])
    return [p @ a for p in (p0, p1) for a in (a0, a1)]


def apply_kraus(rho, kraus, qubit, n):
    return sum(embed(k, [qubit], n) @ rho @ embed(k, [qubit], n).conj().T for k in kraus)


def depolarize(rho, p, qubits, n):
    """(1 - p) rho + p Tr_qubits(rho) ⊗ I/d, written with the Pauli twirl."""
    paulis = [
        np.eye(2),
        np.array([[0, 1], [1, 0]]),
        np.array([[0, -1j], [1j, 0]]),
        np.diag([1, -1]),
    ]
    total = np.zeros_like(rho)
    count = 0
    for index in range(4 ** len(qubits)):
        op = np.eye(1)
        for j in reversed(range(len(qubits))):
            op = np.kron(op, paulis[(index >> (2 * j)) & 3])
        full = embed(op, qubits, n)
        total += full @ rho @ full.conj().T
        count += 1
    return (1 - p) * rho + p * total / count


def reference(qc: QuantumCircuit, t1, t2, time_1q, time_2q, p1, p2) -> np.ndarray:
    """The contract's noise rule applied gate by gate; t1, t2 are per-qubit lists."""
    n = qc.num_qubits
    rho = np.zeros((2**n, 2**n), dtype=complex)
    rho[0, 0] = 1
    for inst in qc.data:
        qubits = [qc.find_bit(q).index for q in inst.qubits]
        u = embed(Operator(inst.operation).data, qubits, n)
        rho = u @ rho @ u.conj().T
        name = inst.operation.name
        if name in ("sx", "x"):
            (q,) = qubits
            rho = depolarize(rho, p1, [q], n)
            rho = apply_kraus(rho, relaxation_kraus(t1[q], t2[q], time_1q), q, n)
        elif name == "cx":
            rho = depolarize(rho, p2, qubits, n)
            for q in qubits:
                rho = apply_kraus(rho, relaxation_kraus(t1[q], t2[q], time_2q), q, n)
    return rho


def aer_dm(qc: QuantumCircuit, params: NoiseParams) -> np.ndarray:
    c = qc.copy()
    c.save_density_matrix(label="rho")
    model = build_noise_model(params, qc.num_qubits)
    sim = AerSimulator(method="density_matrix", noise_model=model)
    return np.asarray(sim.run(c, shots=1, seed_simulator=1).result().data(0)["rho"])


def test_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.sx(0)
    qc.x(1)
    qc.rz(0.4, 0)
    qc.cx(0, 1)
    qc.sx(1)
    qc.cx(1, 0)
    qc.x(0)
    qc.sx(0)
    return qc


test_circuit.__test__ = False  # a helper, not a test

T1 = [20e-6, 90e-6]
T2 = [30e-6, 40e-6]


@pytest.fixture
def asymmetric(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(
        json.dumps(
            {
                "time_1q": "1us",
                "time_2q": "6us",
                "p1": 0.02,
                "p2": 0.05,
                "qubits": {"0": {"t1": "20us", "t2": "30us"}, "1": {"t1": 90e-6, "t2_s": 40e-6}},
            }
        )
    )
    return noise_params(calibration=path)


def test_model_equals_spec_rule(asymmetric):
    params = asymmetric
    assert params.qubit(0)["t1_s"] == 20e-6 and params.qubit(1)["t2_s"] == 40e-6
    qc = test_circuit()
    got = aer_dm(qc, params)
    want = reference(qc, T1, T2, 1e-6, 6e-6, 0.02, 0.05)
    assert np.abs(got - want).max() < 1e-10
    # the check is sensitive to the ordering: swapping the qubits' T1/T2 is far off
    swapped = reference(qc, T1[::-1], T2[::-1], 1e-6, 6e-6, 0.02, 0.05)
    assert np.abs(got - swapped).max() > 1e-3


def test_cx_error_acts_on_control_first():
    """Only the cx is noisy; qubit 0 relaxes fast. Check both directions of the cx."""
    for control, target in ((0, 1), (1, 0)):
        qc = QuantumCircuit(2)
        qc.x(0)
        qc.x(1)
        qc.cx(control, target)
        params = NoiseParams(
            p1=0.0,
            p2=0.0,
            time_1q_s=0.0,
            time_2q_s=10e-6,
            per_qubit={
                "qubits": {"0": {"t1_s": 5e-6, "t2_s": 5e-6}, "1": {"t1_s": 1.0, "t2_s": 1.0}}
            },
        )
        got = aer_dm(qc, params)
        want = reference(qc, [5e-6, 1.0], [5e-6, 1.0], 0.0, 10e-6, 0.0, 0.0)
        assert np.abs(got - want).max() < 1e-10


def test_defaults_match_reference():
    qc = test_circuit()
    d = NoiseParams()
    got = aer_dm(qc, d)
    want = reference(qc, [d.t1_s] * 2, [d.t2_s] * 2, d.time_1q_s, d.time_2q_s, d.p1, d.p2)
    assert np.abs(got - want).max() < 1e-10


def test_zero_noise_is_ideal():
    params = NoiseParams(p1=0, p2=0, time_1q_s=0, time_2q_s=0)
    model = build_noise_model(params, 2)
    assert model.is_ideal()
    qc = test_circuit()
    ideal = reference(qc, [1, 1], [1, 1], 0, 0, 0, 0)
    assert np.abs(aer_dm(qc, params) - ideal).max() < 1e-12


def test_model_basis_and_readout():
    model = build_noise_model(NoiseParams(readout=0.25), 2)
    assert set(model.basis_gates) >= {"rz", "sx", "x", "cx"}
    assert "rz" not in model.noise_instructions
    qc = QuantumCircuit(2, 2)
    qc.measure([0, 1], [0, 1])
    counts = (
        AerSimulator(noise_model=model).run(qc, shots=4000, seed_simulator=5).result().get_counts()
    )
    flipped0 = sum(v for k, v in counts.items() if k[-1] == "1") / 4000
    assert abs(flipped0 - 0.25) < 0.03
    assert "measure" not in build_noise_model(NoiseParams(), 2).noise_instructions


def test_per_qubit_readout_and_pairs(tmp_path):
    path = tmp_path / "cal.toml"
    path.write_text(
        'p2 = 0.02\nreadout = 0.0\n[qubits.1]\nreadout = 0.5\np1 = 0.003\n[pairs."0,1"]\np2 = 0.03\ntime_2q = "400ns"\n'
        '[pairs."1,2"]\np2 = 0.04\n[pairs."2,1"]\np2 = 0.05\n'
    )
    params = noise_params(calibration=path)
    assert params.pair(0, 1) == {"time_2q_s": 4e-7, "p2": 0.03}
    assert params.pair(1, 0) == {"time_2q_s": 4e-7, "p2": 0.03}  # mirrored
    assert params.pair(1, 2)["p2"] == 0.04 and params.pair(2, 1)["p2"] == 0.05  # both given
    assert params.pair(0, 2) == {"time_2q_s": 3e-7, "p2": 0.02}  # global
    assert params.qubit(1)["p1"] == 0.003 and params.qubit(0)["p1"] == 1e-3
    qc = QuantumCircuit(3, 3)
    qc.measure([0, 1], [0, 1])
    model = build_noise_model(params, 3)
    counts = (
        AerSimulator(noise_model=model).run(qc, shots=2000, seed_simulator=2).result().get_counts()
    )
    assert all(k[-1] == "0" for k in counts)  # qubit 0: no readout error
    assert abs(sum(v for k, v in counts.items() if k[-2] == "1") / 2000 - 0.5) < 0.05


# --------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"t1": "10us", "t2": "25us"}, "exceeds 2\\*T1"),
        ({"p1": 1.5}, "p1.*not a probability"),
        ({"p2": -0.1}, "p2.*not a probability"),
        ({"readout": "nan"}, "readout.*not a probability"),
        ({"p1": "lots"}, "cannot read probability"),
        ({"t1": "-5us"}, "t1.*negative"),
        ({"time_1q": "-1ns"}, "time-1q.*negative"),
        ({"time_2q": "50 parsecs"}, "time-2q"),
        ({"t1": 0}, "T1 must be > 0"),
        ({"t2": "0s"}, "T2 must be > 0"),
        ({"t1": float("inf")}, "not finite"),
        ({"p1": True}, "probability"),
    ],
)
def test_noise_params_rejects(kwargs, pattern):
    with pytest.raises(NoiseParameterError, match=pattern):
        noise_params(**kwargs)


def test_noise_params_units_and_precedence(tmp_path):
    params = noise_params(
        t1="50us", t2="70e-6", time_1q=35e-9, time_2q="300ns", p1="2e-3", p2=0.02, readout=0.01
    )
    assert params == NoiseParams(
        t1_s=50e-6, t2_s=70e-6, time_1q_s=35e-9, time_2q_s=300e-9, p1=2e-3, p2=0.02, readout=0.01
    )
    cal = tmp_path / "c.json"
    cal.write_text('{"t1": "100us", "t2": "120us", "p1": 0.005}')
    params = noise_params(t1="80us", calibration=cal)
    assert params.t1_s == 80e-6 and params.t2_s == 120e-6 and params.p1 == 0.005  # explicit wins


def test_validate_direct_and_qubit_range():
    with pytest.raises(NoiseParameterError, match="exceeds 2\\*T1"):
        NoiseParams(t1_s=1e-6, t2_s=3e-6).validate()
    with pytest.raises(NoiseParameterError):
        NoiseParams(time_2q_s=float("nan")).validate()
    params = NoiseParams(per_qubit={"qubits": {"4": {"t1_s": 1e-4}}})
    params.validate()
    params.validate(5)
    with pytest.raises(NoiseParameterError, match="qubit 4 but the circuit has 3"):
        params.validate(3)
    with pytest.raises(NoiseParameterError, match="qubit 4 but the circuit has 3"):
        build_noise_model(params, 3)
    # the per-qubit T1 with the global T2 is impossible
    with pytest.raises(NoiseParameterError, match="qubit 4: T2"):
        NoiseParams(per_qubit={"qubits": {"4": {"t1_s": 1e-5}}}, t2_s=70e-6).validate()
    with pytest.raises(NoiseParameterError, match="pair 0,7"):
        NoiseParams(per_qubit={"pairs": {"0,7": {"p2": 0.1}}}).validate(3)


def test_to_meta_exact_keys_and_roundtrip(asymmetric):
    meta = asymmetric.to_meta()
    assert list(meta) == [
        "t1_s",
        "t2_s",
        "time_1q_s",
        "time_2q_s",
        "p1",
        "p2",
        "readout",
        "per_qubit",
    ]
    assert json.loads(json.dumps(meta)) == meta
    assert NoiseParams(**meta) == asymmetric
    assert NoiseParams().to_meta()["per_qubit"] is None


# ------------------------------------------------------------------------------- calibration


def test_calibration_json_and_toml_agree(tmp_path):
    js = tmp_path / "cal.json"
    js.write_text(
        json.dumps(
            {
                "t1": "60us",
                "time_2q_s": 2.5e-7,
                "qubits": [{"t1": "40us", "t2": "50us"}, {}, {"p1": 0.002, "readout": 0.02}],
                "pairs": {"0,1": {"p2": 0.015}},
            }
        )
    )
    toml = tmp_path / "cal.toml"
    toml.write_text(
        't1 = "60us"\ntime_2q_s = 2.5e-7\n'
        '[qubits.0]\nt1 = "40us"\nt2 = "50us"\n'
        "[qubits.2]\np1 = 0.002\nreadout = 0.02\n"
        '[pairs."0,1"]\np2 = 0.015\n'
    )
    a, b = load_calibration(js), load_calibration(toml)
    assert a == b
    assert a["globals"] == {"t1_s": 60e-6, "time_2q_s": 2.5e-7}
    assert a["per_qubit"]["qubits"] == {
        "0": {"t1_s": 40e-6, "t2_s": 50e-6},
        "2": {"p1": 0.002, "readout": 0.02},
    }
    assert a["per_qubit"]["pairs"] == {"0,1": {"p2": 0.015}, "1,0": {"p2": 0.015}}


@pytest.mark.parametrize(
    "name, text, error, pattern",
    [
        (
            "bad.json",
            '{"t1": "50us",\n "p1": }',
            NoiseParameterError,
            r"bad\.json:2: not valid JSON",
        ),
        ("bad.toml", "t1 = \n", NoiseParameterError, r"bad\.toml: not valid TOML"),
        ("unk.json", '{"t3": 1}', NoiseParameterError, r"unk\.json: top level: unknown key 't3'"),
        (
            "q.json",
            '{"qubits": {"0": {"p2": 0.1}}}',
            NoiseParameterError,
            r"q\.json: qubit 0: unknown key 'p2'",
        ),
        ("q.json", '{"qubits": {"x": {"t1": 1}}}', NoiseParameterError, r"qubit index 'x'"),
        ("p.json", '{"pairs": {"1,1": {"p2": 0.1}}}', NoiseParameterError, "same qubit twice"),
        ("p.json", '{"pairs": {"1": {"p2": 0.1}}}', NoiseParameterError, "'a,b'"),
        (
            "u.json",
            '{"t1": "5 furlongs"}',
            NoiseParameterError,
            r"u\.json: top level: t1: unknown time unit",
        ),
        ("two.json", '{"t1": "5us", "t1_s": 5e-6}', NoiseParameterError, "given twice"),
        ("list.json", "[1, 2]", NoiseParameterError, "object/table at the top"),
        (
            "p.json",
            '{"p1": 2}',
            NoiseParameterError,
            r"p\.json: top level: p1 = 2.0 is not a probability",
        ),
    ],
)
def test_bad_calibration_files(tmp_path, name, text, error, pattern):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(error, match=pattern):
        load_calibration(path)


def test_calibration_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such calibration file"):
        load_calibration(tmp_path / "absent.json")
    with pytest.raises(InputError, match="is a directory"):
        load_calibration(tmp_path)
    path = tmp_path / "t2.json"
    path.write_text('{"qubits": {"1": {"t1": "10us", "t2": "30us"}}}')
    with pytest.raises(NoiseParameterError, match=r"t2\.json: qubit 1: T2 .* exceeds 2\*T1"):
        noise_params(calibration=path)


def test_documented_examples_parse_and_agree(tmp_path):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "calibration.md").read_text(
        encoding="utf-8"
    )
    (tmp_path / "a.json").write_text(re.search(r"```json\n(.*?)```", doc, re.S).group(1))
    (tmp_path / "a.toml").write_text(re.search(r"```toml\n(.*?)```", doc, re.S).group(1))
    assert load_calibration(tmp_path / "a.json") == load_calibration(tmp_path / "a.toml")
    build_noise_model(noise_params(calibration=tmp_path / "a.toml"), 4)
