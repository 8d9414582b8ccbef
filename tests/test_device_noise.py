"""A device's noise (``--backend``/``backend=``): the circuit transpiled to the device and
simulated on the qubits it uses, results in the user's qubit order, equal to Aer's oracle."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import DensityMatrix, Statevector, state_fidelity

import noisefs
from noisefs.aggregate.linalg import reorder_qubits
from noisefs.errors import InputError
from noisefs.oracle import aer_reference, aer_reference_expectations, aer_reference_steps
from noisefs.result import Result
from noisefs.sim.device_layout import compact_to_active
from tests import circuits
from tests.test_cli_run import noisefs_cli

fake_provider = pytest.importorskip(
    "qiskit_ibm_runtime.fake_provider", reason="the devices extra (qiskit-ibm-runtime)"
)


def routed_circuit() -> QuantumCircuit:
    """Four qubits that every pair of which interacts: routing must move them on any device.
    Asymmetric at the first barrier (x on qubit 0 only), so a wrong order shows."""
    qc = QuantumCircuit(4)
    qc.x(0)
    qc.h(3)
    qc.barrier()
    for a, b in itertools.permutations(range(4), 2):
        qc.cx(a, b)
    qc.rz(0.3, 1)
    qc.sx(2)
    qc.t(0)
    qc.h(3)
    qc.barrier()
    qc.swap(0, 3)  # the user's own swap: a gate, not a move
    qc.cx(1, 2)
    qc.h(1)
    return qc


def ideal_prefixes(qc: QuantumCircuit) -> list[np.ndarray]:
    """The noiseless state at each barrier and at the end, in the user's order."""
    ends = [i for i, inst in enumerate(qc.data) if inst.operation.name == "barrier"]
    states = []
    for end in [*ends, len(qc.data)]:
        prefix = QuantumCircuit(qc.num_qubits)
        for inst in qc.data[:end]:
            prefix.append(inst)
        states.append(Statevector(prefix).data)
    return states


@pytest.mark.parametrize(
    ("device", "two_qubit_gate"), [("FakeTorino", "cz"), ("FakeSherbrooke", "ecr")]
)
@pytest.mark.parametrize("store", ["factored", "dense"])
def test_a_device_run_is_in_the_users_order_and_equals_the_oracle(
    run_kwargs, device, two_qubit_gate, store
):
    qc = routed_circuit()
    result = noisefs.run(
        qc, trajectories=120, seed=4, batch=40, store=store, backend=device,
        observables={"zz": "Z0 Z1", "xy": "X0 Y3"}, quiet=True, **run_kwargs,
    )  # fmt: skip
    meta = result.meta
    assert two_qubit_gate in meta["executed_qasm"] and meta["device"]["class"] == device
    assert meta["step_orders"], "routing moved the qubits: a snapshot was reordered"
    assert result.rho.shape == (3, 16, 16) and result.z_mean.shape == (3, 4)
    # exact against Aer on the executed circuit, with the recorded (cut-down) device model
    assert np.abs(result.rho - aer_reference_steps(meta, result.steps)).max() <= 1e-8
    assert np.abs(result.rho[-1] - aer_reference(meta)).max() <= 1e-8
    want = aer_reference_expectations(meta, result.steps)
    assert np.abs(result.observables - want).max() <= 1e-8
    # independent of noisefs's own reordering: at every snapshot the user's own order fits
    # the noiseless state best, by far, of all 24 orders
    for rho, ideal in zip(result.rho, ideal_prefixes(qc), strict=True):
        fidelity = {
            order: state_fidelity(
                DensityMatrix(rho), Statevector(reorder_qubits(ideal[None], order, 4, axes=1)[0])
            )
            for order in itertools.permutations(range(4))
        }
        best = max(fidelity, key=fidelity.get)
        assert best == (0, 1, 2, 3) and fidelity[best] > 0.6
        others = sorted(v for k, v in fidelity.items() if k != best and not _same(rho, k))
        assert not others or others[-1] < fidelity[best] - 0.2


def _same(rho: np.ndarray, order: tuple[int, ...]) -> bool:
    """Whether reordering leaves ``rho`` unchanged (a symmetric state cannot tell orders)."""
    return np.allclose(reorder_qubits(rho[None], order, 4, axes=2)[0], rho, atol=1e-6)


def test_a_backend_object_of_the_users_own(run_kwargs):
    backend = GenericBackendV2(num_qubits=6, basis_gates=["cz", "sx", "x", "rz", "id"], seed=3)
    result = noisefs.run(
        circuits.QFT4, trajectories=60, seed=2, backend=backend, quiet=True, **run_kwargs
    )
    assert result.meta["device"]["class"] == "GenericBackendV2"
    assert np.abs(result.rho - aer_reference_steps(result.meta, result.steps)).max() <= 1e-8


def test_the_cli_takes_a_device_name_and_inspect_reads_the_result(tmp_path, arena_root):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    out = tmp_path / "qft.npz"
    proc = noisefs_cli(
        "run", path, "-k", 40, "--seed", 3, "--backend", "FakeTorino", "-o", out, "--quiet",
        "--arena", arena_root, "--spill", tmp_path / "spill",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = Result.load(out)
    assert result.meta["device"]["backend"] == "fake_torino"
    assert np.abs(result.rho - aer_reference_steps(result.meta, result.steps)).max() <= 1e-8
    assert noisefs_cli("inspect", out).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "FakeNowhere"], "no fake device 'FakeNowhere'"),
        (["--backend", "FakeTorino", "--t1", "40us"], "drop t1"),
        (["--backend", "FakeTorino", "--snapshots", "every:2"], "--snapshots barriers or final"),
        (["--backend", "FakeTorino", "--optimize", "3"], "use 2 or lower"),
    ],
)
def test_device_input_errors_are_one_line_exit_2(tmp_path, arena_root, args, message):
    path = tmp_path / "c.qasm"
    path.write_text(QASM_ROUTED)
    proc = noisefs_cli("run", path, "-k", 4, "--quiet", "--arena", arena_root, *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


QASM_ROUTED = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
x q[0];
cx q[0],q[1]; cx q[0],q[2]; cx q[0],q[3]; cx q[1],q[2]; cx q[1],q[3]; cx q[2],q[3];
cx q[3],q[0]; cx q[2],q[0];
"""


def test_control_flow_is_refused_on_a_device(run_kwargs):
    with pytest.raises(InputError, match="control flow"):
        noisefs.run(circuits.MIDCIRCUIT2, backend="FakeTorino", quiet=True, **run_kwargs)


def test_without_the_extra_the_message_names_the_pip_line(tmp_path):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    blocked = (
        "import sys; sys.modules['qiskit_ibm_runtime'] = None; "
        "sys.modules['qiskit_ibm_runtime.fake_provider'] = None; "
        "from noisefs.cli import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "run", str(path), "--backend", "FakeTorino", "-k", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "pip install 'noisefs[devices]'" in lines[0]


def test_spare_qubits_routing_passed_through_come_after_the_users():
    """Routing that parks a user qubit on a spare device qubit (device qubit 3 here): the
    spare is simulated after the user's qubits, and each snapshot's order says where the
    user's qubits are."""
    translated = QuantumCircuit(5)
    translated.x(0)
    translated.barrier(0, 1)
    translated.cx(0, 3)  # a move through device qubit 3
    translated.cx(3, 0)
    translated.cx(0, 3)
    compact, layout = compact_to_active(
        translated,
        num_user=2,
        initial={0: 0, 1: 1},
        at_barriers=[{0: 0, 1: 1}],
        final={0: 3, 1: 1},
    )
    assert layout.physical == (3, 1, 0) and compact.num_qubits == 3
    assert layout.order(0) == (2, 1, 0) and layout.order(None) == (0, 1, 2)
    assert layout.moves and layout.initial_order == (2, 1)
