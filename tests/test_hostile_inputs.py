"""Inputs found from outside that crashed, hung or exhausted noisefs: each ends in one line
and its exit code, or runs exactly, never a traceback (each test failed before its fix)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import noisefs
from noisefs.errors import NoiseParameterError, SimulationError
from noisefs.oracle import aer_reference
from noisefs.sim.aer import SimulationJob, simulate
from noisefs.sim.batches import Batch
from noisefs.sim.noise import noise_params
from tests.test_cli_run import noisefs_cli

CHAIN3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[4] q;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
cx q[2], q[3];
"""


def one_line_error(proc, code: int = 2) -> str:
    """The run ended with ``code`` and exactly one stderr line, ``noisefs: error: ...``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("noisefs: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OPENQASM 3.0;\nqubit[1000000000] q;\n", "1000000000 qubits"),
        ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[18446744073709551617];\n', "too large"),
        ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[10000];\nh q[0];\n', "10000 qubits"),
        ("OPENQASM 3.0;\nbit[99999999999999] c;\nqubit q;\n", "classical bits"),
    ],
    ids=["oq3-billion", "oq2-2^64+1", "oq2-10000", "oq3-huge-bits"],
)
def test_declared_sizes_are_refused_before_a_circuit_is_built(tmp_path, text, expected):
    path = tmp_path / "big.qasm"
    path.write_text(text)
    proc = noisefs_cli("run", path, "-k", "1", "--quiet", timeout=60)
    line = one_line_error(proc)
    assert expected in line and f"{path}:" in line
    assert not (tmp_path / "big.noisefs.npz").exists()


def test_an_openqasm3_syntax_error_prints_one_line(tmp_path):
    path = tmp_path / "dollar.qasm"
    path.write_text('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\n$ x;\n')
    line = one_line_error(noisefs_cli("run", path, "-k", "1", "--quiet", timeout=60))
    assert f"{path}:5:" in line


def test_a_zero_gate_time_with_gate_error_runs_exactly(run_kwargs):
    """Composed with an identity relaxation, Aer 0.18 failed on the model ('Kraus is empty',
    'heevx'); the relaxation of a zero-length gate is left out and the run equals Aer's."""
    result = noisefs.run(
        CHAIN3, trajectories=40, seed=11, p2=0.009, time_2q=0, time_1q=0, quiet=True, **run_kwargs
    )
    assert np.abs(result.rho[-1] - aer_reference(result.meta)).max() < 1e-8
    assert result.meta["noise"]["time_2q_s"] == 0.0


def test_any_failure_inside_aer_is_a_simulation_error():
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1)
    qc.x(0)
    qc.save_statevector(label="s0", pershot=True)
    # an integer Aer's C++ configuration cannot take: a TypeError from inside Aer
    job = SimulationJob(qc, ("s0",), None, "factored", "r", aer_threads=2**70)
    with pytest.raises(SimulationError, match="Aer could not simulate trajectories 0-1"):
        simulate(job, Batch(index=0, start=0, size=2, seed=5))


@pytest.mark.parametrize(
    "content",
    [
        '{"t1": 1' + "0" * 400 + "}",  # OverflowError converting to float
        '{"t1": 1' + "0" * 5000 + "}",  # ValueError: more digits than int() converts
        '{"p1": 1' + "0" * 400 + "}",
        "[" * 100_000 + "]" * 100_000,  # RecursionError in the JSON reader
        '{"qubits": {"\u00b2": {"t1": "50us"}}}',  # '²'.isdigit() but int('²') fails
    ],
    ids=["t1-400-digits", "t1-5000-digits", "p1-400-digits", "deep-json", "superscript-key"],
)
def test_hostile_calibration_files_are_input_errors(tmp_path, content):
    path = tmp_path / "cal.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(NoiseParameterError, match="cal.json"):
        noise_params(calibration=path)


def test_deeply_nested_toml_calibration_is_an_input_error(tmp_path):
    path = tmp_path / "cal.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(NoiseParameterError, match="cal.toml"):
        noise_params(calibration=path)


def test_a_huge_calibration_number_from_the_cli_is_one_line(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"time_1q": 10**400}))
    circuit = tmp_path / "c.qasm"
    circuit.write_text(CHAIN3)
    proc = noisefs_cli("run", circuit, "-k", "1", "--calibration", cal, "--quiet", timeout=60)
    assert "too large" in one_line_error(proc)


@pytest.mark.parametrize(
    "flag", ["--aer-threads", "--trajectories", "--batch", "--workers", "--seed", "--max-files"]
)
def test_integers_beyond_64_bits_are_refused_as_options(tmp_path, flag):
    circuit = tmp_path / "c.qasm"
    circuit.write_text(CHAIN3)
    proc = noisefs_cli("run", circuit, flag, "99999999999999999999", "--quiet", timeout=60)
    assert flag in one_line_error(proc)


def test_text_with_carriage_returns_only_is_openqasm_not_a_file_name(run_kwargs):
    text = 'OPENQASM 2.0;\rinclude "qelib1.inc";\rqreg q[1];\rx q[0];\r'
    result = noisefs.run(text, trajectories=8, seed=3, quiet=True, **run_kwargs)
    assert result.meta["num_qubits"] == 1
    assert result.probabilities[-1][1] > 0.9
