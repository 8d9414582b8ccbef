"""Translation to the contract's basis and the order the executed circuit is written in
(docs/contract.md "Circuits").

* **Basis.** :func:`translate` rewrites a circuit to ``rz, sx, x, cx`` plus ``measure``,
  ``reset``, ``barrier``, ``delay`` and control flow. At ``optimization_level=0`` (the
  contract's default) it runs a lean pass manager: exactly the passes Qiskit's level-0 preset
  runs for a target with this basis and no coupling map (unitary synthesis, high-level
  synthesis, the basis translator over Qiskit's ``SessionEquivalenceLibrary``, and the unit
  conversion of delays), without building the preset's stage plugins, which costs a process
  most of its first ``transpile`` call, and without importing every installed high-level
  synthesis plugin (:mod:`noisefs.sim.synthesis_plugins`). The output equals ``transpile(qc, basis_gates=[...],
  optimization_level=0)`` (``tests/test_translate_lean.py`` checks it on the corpus). Levels
  1-3 use Qiskit's full preset pass manager.
* **Layer order.** The executed circuit is written layer by layer (ASAP layers of the DAG,
  barriers placed between layers without forming one), so each layer is a contiguous run of
  ``qc.data`` and ``"layers"`` snapshots are exact DAG layers. Reordering operations on
  disjoint wires changes neither the state nor the noise (the model has no idle errors). The
  qubit order is never changed: qubit 0 is the least significant, as written.
* **Aer's order of control flow** (:func:`aer_ordered`): see there.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qiskit import QuantumCircuit, transpile
from qiskit.circuit import (
    CONTROL_FLOW_OP_NAMES,
    CircuitInstruction,
    ControlFlowOp,
    get_control_flow_name_mapping,
)
from qiskit.converters import circuit_to_dag, dag_to_circuit
from qiskit.transpiler import Target
from qiskit.transpiler.preset_passmanagers.common import (
    generate_scheduling,
    generate_translation_passmanager,
)

from noisefs.aer_private import unchecked_append
from noisefs.errors import CircuitError, InputError, one_line
from noisefs.sim.measurements import read_bits
from noisefs.sim.noise import BASIS_GATES
from noisefs.sim.synthesis_plugins import lazy_synthesis_plugins

if TYPE_CHECKING:
    from qiskit.transpiler import PassManager

__all__ = [
    "ALLOWED_NON_GATES",
    "BASIS_GATES",
    "aer_ordered",
    "layer_levels",
    "lean_pass_manager",
    "translate",
]

CONTROL_FLOW = frozenset({"if_else", "while_loop", "for_loop", "switch_case", "box"})
ALLOWED_NON_GATES = frozenset(
    {"measure", "reset", "barrier", "delay", "store", "break_loop", "continue_loop"} | CONTROL_FLOW
)


# --------------------------------------------------------------------------------------------
# Basis translation


_LEAN_LOCK = threading.Lock()  # a pass manager's passes hold per-run state: one run at a time


@functools.cache
def lean_pass_manager() -> PassManager:
    """Qiskit's level-0 translation for the contract's basis and no coupling map, built directly.

    Built once per process and reused (guarded by a lock: passes hold per-run state).

    What Qiskit's ``generate_preset_pass_manager(0, basis_gates=...)`` runs for such a
    target: no init, layout, routing or optimisation stage (no coupling map, level 0); the
    translation stage (``UnitarySynthesis``, ``HighLevelSynthesis``, ``BasisTranslator``);
    and the scheduling stage's unit conversion of ``delay``. The pre-init stage only checks
    that control flow is supported, which it is. ``seed_transpiler`` is used by none of
    these passes (it seeds layout and routing), so the result does not depend on it.
    """

    # The basis Qiskit derives from ``basis_gates``: the gates plus measure, delay, reset
    # and the control-flow operations (sorted: Qiskit builds it from a set).
    basis = sorted(set(BASIS_GATES) | {"measure", "delay", "reset"} | set(CONTROL_FLOW_OP_NAMES))
    target = Target.from_configuration(
        basis_gates=basis, custom_name_mapping=get_control_flow_name_mapping()
    )
    with lazy_synthesis_plugins():
        translation = generate_translation_passmanager(
            target,
            basis_gates=basis,
            method="translator",
            approximation_degree=1.0,
            coupling_map=None,
            unitary_synthesis_method="default",
            unitary_synthesis_plugin_config=None,
            hls_config=None,
            qubits_initially_zero=True,
        )
    scheduling = generate_scheduling(target.durations(), None, target.timing_constraints(), target)
    translation.append(scheduling.to_flow_controller())
    return translation


def _run_passes(
    qc: QuantumCircuit, optimization_level: int, seed_transpiler: int, basis: tuple[str, ...]
) -> QuantumCircuit:
    if optimization_level == 0 and tuple(basis) == BASIS_GATES:
        with _LEAN_LOCK:
            out = lean_pass_manager().run(qc)
        out.name = qc.name  # as ``transpile`` names its output
        return out
    with lazy_synthesis_plugins():
        return transpile(
            qc,
            basis_gates=list(basis),
            optimization_level=optimization_level,
            seed_transpiler=seed_transpiler,
        )


def _check_basis(qc: QuantumCircuit, basis: tuple[str, ...]) -> None:
    allowed = set(basis) | ALLOWED_NON_GATES
    for inst in qc.data:
        op = inst.operation
        if op.name not in allowed:
            raise CircuitError(
                f"instruction {op.name!r} could not be translated to {', '.join(basis)}"
            )
        for block in getattr(op, "blocks", ()):
            _check_basis(block, basis)


# --------------------------------------------------------------------------------------------
# Order


def _wires(inst: CircuitInstruction) -> set:
    return set(inst.qubits) | read_bits(inst)


def layer_levels(data: Sequence[CircuitInstruction]) -> list[tuple[int, int]]:
    """ASAP layer of each instruction: ``(layer, 0)`` for an operation, ``(m, 1)`` for a
    barrier after layer ``m`` (barriers synchronise, never count). Every barrier, even a
    partial one, is a cut for the order: nothing written after it moves before it, so the
    snapshot taken there shows exactly what was written before it."""
    wire_level: dict = {}
    floor = 0  # the layer of the last barrier: nothing after it goes below
    levels = []
    for inst in data:
        wires = _wires(inst)
        depth = max((wire_level.get(w, 0) for w in wires), default=0)
        depth = max(depth, floor)
        if inst.operation.name == "barrier":
            depth = max([depth, *wire_level.values()])
            levels.append((depth, 1))
            floor = depth
        else:
            levels.append((depth + 1, 0))
            for w in wires:
                wire_level[w] = depth + 1
    return levels


def _layer_ordered(qc: QuantumCircuit) -> QuantumCircuit:
    if qc.num_vars or getattr(qc, "num_stretches", 0):
        return qc  # standalone classical variables: wires not tracked, keep Qiskit's order
    levels = layer_levels(qc.data)
    order = sorted(range(len(qc.data)), key=lambda i: (levels[i], i))
    if order == list(range(len(qc.data))):
        return qc
    out = qc.copy_empty_like()
    append = unchecked_append(out)
    for i in order:
        append(qc.data[i])
    return out


def _unbox(qc: QuantumCircuit) -> QuantumCircuit:
    """Inline top-level ``box`` scopes (Aer does not run them; a box only groups)."""
    if not any(inst.operation.name == "box" for inst in qc.data):
        return qc
    out = qc.copy_empty_like()
    append = unchecked_append(out)
    for inst in qc.data:
        if inst.operation.name != "box":
            append(inst)
            continue
        body = _unbox(inst.operation.blocks[0])
        outer = dict(zip(body.qubits, inst.qubits, strict=True))
        outer.update(zip(body.clbits, inst.clbits, strict=True))
        for nested in body.data:
            append(
                nested.replace(
                    qubits=[outer[q] for q in nested.qubits],
                    clbits=[outer[c] for c in nested.clbits],
                )
            )
    return out


def _is_dynamic(qc: QuantumCircuit) -> bool:
    return any(isinstance(inst.operation, ControlFlowOp) for inst in qc.data)


def aer_ordered(qc: QuantumCircuit) -> QuantumCircuit:
    """The order in which Aer executes a circuit with control flow.

    For such circuits Aer inlines every control-flow operation between two barriers and
    runs the result through a Qiskit pass manager, whose DAG round trip re-sorts the
    independent operations between them. Randomness is drawn in execution order, so a save
    (which Aer also treats as a barrier) placed in a different order would change the
    trajectories; written in Aer's own order, saves change nothing. Plain circuits are
    executed as written.
    """
    if not _is_dynamic(qc):
        return qc
    out = qc.copy_empty_like()
    segment = qc.copy_empty_like()
    append, append_to_segment = unchecked_append(out), unchecked_append(segment)

    def flush() -> None:
        if segment.data:
            for inst in dag_to_circuit(circuit_to_dag(segment)).data:
                append(inst)
            segment.data.clear()

    for inst in qc.data:
        if isinstance(inst.operation, ControlFlowOp):
            flush()
            append(inst)
        else:
            append_to_segment(inst)
    flush()
    return out


# --------------------------------------------------------------------------------------------
# The whole translation


def basis_circuit(
    qc: QuantumCircuit,
    optimization_level: int = 0,
    seed_transpiler: int = 1234,
    basis: tuple[str, ...] = BASIS_GATES,
) -> QuantumCircuit:
    """Only the basis translation (lean at level 0 to the rule's basis, Qiskit's preset
    otherwise), no reordering."""
    if not isinstance(optimization_level, int) or not 0 <= optimization_level <= 3:
        raise InputError(f"optimization level must be 0, 1, 2 or 3, not {optimization_level!r}")
    try:
        out = _run_passes(qc, optimization_level, seed_transpiler, basis)
    except Exception as exc:
        raise CircuitError(
            f"cannot translate the circuit to {', '.join(basis)}: {one_line(exc)}"
        ) from None
    if out.num_qubits != qc.num_qubits or list(out.qubits) != list(qc.qubits):
        raise CircuitError("translation changed the qubits of the circuit")  # pragma: no cover
    return out


def translate(
    qc: QuantumCircuit,
    optimization_level: int = 0,
    seed_transpiler: int = 1234,
    basis: tuple[str, ...] = BASIS_GATES,
) -> QuantumCircuit:
    """Transpile to ``rz, sx, x, cx`` (plus measure, reset, barrier, delay, control flow), or
    to the ``basis`` of a user's noise model.

    No coupling map, so no layout or routing: qubit ``i`` stays qubit ``i``. Level 0 (the
    default) keeps every gate the user wrote (``x; x`` stays two noisy ``x``) and runs the
    lean pass manager (module docstring). The result is written in layer order, and in Aer's
    order around control flow. Failures raise :class:`CircuitError`.
    """
    out = _unbox(basis_circuit(qc, optimization_level, seed_transpiler, basis))
    _check_basis(out, basis)
    return aer_ordered(_layer_ordered(out))
