"""Aer's own decisions, read from its C++ sources and re-implemented in Python: the qubit
truncation (which operations Aer simulates, :func:`ancestry`) and the automatic method's
choice of ``density_matrix`` (:func:`automatic_picks_density_matrix`, :func:`can_sample`)."""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit
from qiskit_aer.library.save_instructions.save_data import SaveData


def is_save(op) -> bool:
    """Whether ``op`` is one of Aer's save instructions."""
    return isinstance(op, SaveData)


_RESULT_OPS = {"measure", "roerror"}


@dataclass(frozen=True)
class Ancestry:
    """Aer's qubit truncation of a circuit's top-level operations (see :func:`ancestry`)."""

    running: list[set[int]]  # result-ancestor qubits right after each op was classified
    kept: list[bool]  # whether Aer keeps (simulates) each op
    active: set[int]  # the qubits Aer simulates


def ancestry(circuit: QuantumCircuit) -> Ancestry | None:
    """Aer's qubit truncation (``Circuit::set_params``/``check_result_ancestor`` in
    circuit.hpp), read backwards over the top-level operations: an operation is kept when it
    makes a result (measure, save) or touches a qubit a later kept operation needs. None for
    circuits this reading does not cover (control flow, stores)."""
    data = circuit.data
    running: list[set[int]] = [set() for _ in data]
    kept = [False] * len(data)
    ancestors: set[int] = set()
    active: set[int] = set()
    for index in reversed(range(len(data))):
        inst = data[index]
        op = inst.operation
        if getattr(op, "blocks", None) or getattr(op, "condition", None) or op.name == "store":
            return None
        qubits = {circuit.find_bit(q).index for q in inst.qubits}
        if op.name == "barrier":
            pass
        elif op.name in _RESULT_OPS or is_save(op) or ancestors & qubits:
            ancestors |= qubits
            active |= qubits
            kept[index] = True
        running[index] = set(ancestors)
    return Ancestry(running, kept, active)


# -- automatic method ----------------------------------------------------------------------

_DM_INVALID = {"save_statevector", "save_statevector_dict", "save_amplitudes"}


def can_sample(circuit: QuantumCircuit, truncation: bool = True) -> bool | None:
    """Python's reading of Aer's ``Circuit::can_sample`` (circuit.hpp) for the operations Aer
    keeps: after the first measurement only measurements and operations on unmeasured qubits,
    no saves, no conditions. None where this reading cannot tell (control flow that is not
    conditioned on an earlier measurement with results after it)."""
    found = ancestry(circuit) if truncation else None
    if truncation and found is None:
        return _control_flow_can_sample(circuit)
    kept = found.kept if found is not None else [True] * len(circuit.data)
    measured: set[int] = set()
    seen_measure = False
    for index, inst in enumerate(circuit.data):
        if not kept[index]:
            continue
        op = inst.operation
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if op.name == "measure":
            seen_measure = True
            measured.update(qubits)
            continue
        if op.name == "initialize" and len(qubits) < circuit.num_qubits:
            return False
        if not seen_measure or op.name == "barrier":
            continue
        if is_save(op) or getattr(op, "blocks", None):
            return False
        if measured.intersection(qubits):
            return False
    return True


def _control_flow_can_sample(circuit: QuantumCircuit) -> bool | None:
    """False when a control-flow operation follows a measurement and a result follows it
    (Aer keeps its conditional jump, and a condition after the first measurement forbids
    sampling); None otherwise."""
    data = circuit.data
    names = [inst.operation.name for inst in data]
    if "measure" not in names:
        return None
    first = names.index("measure")
    for index in range(first + 1, len(data)):
        if getattr(data[index].operation, "blocks", None):
            later = data[index + 1 :]
            if any(i.operation.name == "measure" or is_save(i.operation) for i in later):
                return False
    return None


def _names(circuit) -> set[str]:
    names = set()
    for inst in circuit.data:
        names.add(inst.operation.name)
        for block in getattr(inst.operation, "blocks", None) or ():
            names |= _names(block)
    return names


def automatic_picks_density_matrix(
    circuit: QuantumCircuit, probe_metadata: dict, shots: int, truncation: bool = True
) -> bool | None:
    """Whether Aer's automatic method (aer_controller.hpp) would pick ``density_matrix`` for
    ``circuit`` at ``shots`` shots, given the metadata of a 1-shot probe of the same circuit;
    None where that cannot be told (see :func:`can_sample`)."""
    if probe_metadata.get("noise") in (None, "ideal", "readout"):
        return False
    nq = int(probe_metadata.get("num_qubits", circuit.num_qubits))
    if nq >= 30 or shots <= 2**nq:
        return False
    if _names(circuit) & _DM_INVALID:
        return False
    max_mb = probe_metadata.get("max_memory_mb")
    if max_mb and 16 * 4**nq > int(max_mb) * 2**20:
        return False
    return can_sample(circuit, truncation)
