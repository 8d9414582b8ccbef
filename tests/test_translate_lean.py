"""The lean level-0 translation equals Qiskit's full ``transpile(..., optimization_level=0)``.

noisefs translates with a pass manager built directly (``noisefs.sim.translate``) to skip the
preset's start-up cost; the contract's rule is Qiskit's level 0, so the executed circuit must be the
one the full preset gives, on every circuit of the corpus and on circuits that exercise each
pass (unitary synthesis, high-level synthesis, custom definitions, delays, control flow).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Gate, Parameter
from qiskit.circuit.library import QFTGate, UnitaryGate
from qiskit.quantum_info import random_unitary

import noisefs.sim.translate as translate_module
from noisefs.errors import CircuitError
from noisefs.sim.prepare import prepare
from noisefs.sim.qasm import load_circuit
from noisefs.sim.snapshots import executed_qasm
from noisefs.sim.translate import BASIS_GATES, basis_circuit
from tests import circuits as text_circuits

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "examples").glob("*.qasm")) + sorted(
    (ROOT.parent / "shared" / "circuits").glob("**/*.qasm")
)
TEXTS = {
    name: value
    for name, value in vars(text_circuits).items()
    if name.isupper() and isinstance(value, str) and "OPENQASM" in value
}


def full_level0(
    qc: QuantumCircuit, optimization_level: int, seed_transpiler: int, basis=BASIS_GATES
):
    return transpile(
        qc,
        basis_gates=list(basis),
        optimization_level=optimization_level,
        seed_transpiler=seed_transpiler,
    )


def assert_same_passes(qc: QuantumCircuit) -> None:
    lean = basis_circuit(qc, 0)
    full = full_level0(qc, 0, 1234)
    assert lean == full
    assert float(lean.global_phase) == float(full.global_phase)
    assert lean.name == full.name
    assert executed_qasm(lean) == executed_qasm(full)


def full_executed(monkeypatch, source) -> str:
    with monkeypatch.context() as patch:
        patch.setattr(translate_module, "_run_passes", full_level0)
        return executed_qasm(prepare(source).circuit)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_executed_circuit_equals_full_transpile(path, monkeypatch):
    try:
        qc = load_circuit(path)
    except CircuitError:
        pytest.skip(f"{path.name} does not parse (tested elsewhere)")
    assert_same_passes(qc)
    assert executed_qasm(prepare(path).circuit) == full_executed(monkeypatch, path)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_test_circuits_equal_full_transpile(name, monkeypatch):
    text = TEXTS[name]
    assert_same_passes(load_circuit_text(text))
    assert executed_qasm(prepare(text).circuit) == full_executed(monkeypatch, text)


def load_circuit_text(text: str) -> QuantumCircuit:
    from noisefs.sim.qasm import load_text

    return load_text(text)


def _synthetic() -> dict[str, QuantumCircuit]:
    out: dict[str, QuantumCircuit] = {}

    qc = QuantumCircuit(3)
    qc.append(UnitaryGate(random_unitary(2, seed=1)), [0])
    qc.append(UnitaryGate(random_unitary(4, seed=2)), [1, 2])
    qc.append(UnitaryGate(random_unitary(8, seed=3)), [0, 1, 2])
    out["unitaries"] = qc

    sub = QuantumCircuit(2, name="mine")
    sub.h(0)
    sub.cry(0.4, 0, 1)
    sub.swap(0, 1)
    qc = QuantumCircuit(4, global_phase=0.3)
    qc.append(sub.to_gate(), [2, 0])
    qc.append(sub.to_instruction(), [1, 3])
    qc.mcx([0, 1, 2], 3)
    qc.append(QFTGate(4), range(4))
    qc.rxx(0.2, 0, 3)
    qc.u(0.1, 0.2, 0.3, 1)
    out["custom_and_library"] = qc

    qc = QuantumCircuit(2, 1)
    qc.h(0)
    qc.delay(100, 0, unit="ns")
    qc.delay(2e-7, 1, unit="s")
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)) as orelse:
        qc.ry(0.3, 1)
    with orelse:
        qc.ch(0, 1)
    with qc.while_loop((qc.clbits[0], 1)):
        qc.t(0)
        qc.measure(0, 0)
    with qc.for_loop(range(2)):
        qc.sdg(1)
    with qc.switch(qc.clbits[0]) as case:
        with case(0):
            qc.y(1)
        with case(case.DEFAULT):
            qc.s(1)
    with qc.box():
        qc.cz(0, 1)
    out["delays_and_control_flow"] = qc

    theta = Parameter("t")
    qc = QuantumCircuit(2)
    qc.rzz(2 * theta, 0, 1)
    qc.initialize([0, 1], [1])
    out["bound_parameter_and_initialize"] = qc.assign_parameters({theta: 0.7})
    return out


SYNTHETIC = _synthetic()


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_circuits_equal_full_transpile(name, monkeypatch):
    qc = SYNTHETIC[name]
    assert_same_passes(qc)
    assert executed_qasm(prepare(qc).circuit) == full_executed(monkeypatch, qc)


def test_lean_result_does_not_depend_on_the_seed():
    qc = SYNTHETIC["custom_and_library"]
    assert basis_circuit(qc, 0, seed_transpiler=1) == basis_circuit(qc, 0, seed_transpiler=99)
    assert basis_circuit(qc, 0, seed_transpiler=7) == full_level0(qc, 0, 7)


def test_untranslatable_fails_alike():
    qc = QuantumCircuit(1)
    qc.append(Gate("opaque", 1, []), [0])
    with pytest.raises(CircuitError, match="cannot translate"):
        basis_circuit(qc, 0)
    with pytest.raises(Exception):  # noqa: B017 - whatever Qiskit raises
        full_level0(qc, 0, 1234)


def test_higher_levels_still_use_the_full_preset():
    qc = SYNTHETIC["custom_and_library"]
    for level in (1, 2, 3):
        assert basis_circuit(qc, level, 5) == full_level0(qc, level, 5)
    # level 1+ may merge gates; level 0 never does
    x2 = QuantumCircuit(1)
    x2.x(0)
    x2.x(0)
    assert len(basis_circuit(x2, 0).data) == 2
    assert len(basis_circuit(x2, 1).data) == 0
