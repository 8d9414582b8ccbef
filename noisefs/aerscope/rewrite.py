"""Save rewriting: every averaged save of a circuit turned per-shot, so that each average is
computed from per-shot data, and a :class:`LabelSpec` per label saying how batches merge it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from qiskit import QuantumCircuit
from qiskit_aer.library import SaveStatevector

from noisefs.aer_private import save_subtype, set_save_subtype
from noisefs.aerscope.aer_rules import ancestry, is_save

STATE_SAVES = ("save_statevector",)
DENSITY_SAVES = ("save_density_matrix",)


@dataclass(frozen=True)
class LabelSpec:
    """How one save label of one circuit is collected and merged.

    ``kind``: ``state`` (per-shot ψ folded with ZHERK into an averaged ρ, over ``keep``),
    ``density`` (per-shot ρ folded), ``mean`` (per-shot values averaged), ``concat`` (a list the
    user asked for), ``last`` (single data: the last batch's), ``sum`` (accumulated data).
    ``save_type``/``subtype`` are what the user's result reports (Aer's formatting keys).
    """

    label: str
    kind: str
    conditional: bool
    save_type: str
    subtype: str
    keep: tuple[int, ...] | None = None  # state kind: kept qubits (None: all)
    width: int = 0  # qubits of each per-shot ψ or ρ Aer returns (state and density kinds)

    def shot_bytes(self) -> int:
        """Bytes of the per-shot data Aer returns for this label (0: not per-shot states)."""
        if self.kind == "state":
            return 16 * 2**self.width
        if self.kind == "density":
            return 16 * 4**self.width
        return 0

    def result_bytes(self) -> int:
        """Bytes of the averaged ρ this label's per-shot states are folded into (one per
        memory key where conditional; 0: not per-shot states)."""
        if self.kind == "state":
            return 16 * 4 ** (len(self.keep) if self.keep is not None else self.width)
        if self.kind == "density":
            return 16 * 4**self.width
        return 0


@dataclass
class Rewritten:
    """A circuit with its saves made per-shot, and the specs of its labels."""

    circuit: object
    specs: dict[str, LabelSpec] = field(default_factory=dict)


def _save_type_name(op) -> str:
    """The key Aer reports in ``result_types`` for this save (its instruction name)."""
    return op.name


def _label_of(op) -> str:
    return op.label if op.label else op.name


def rewrite_circuit(circuit: QuantumCircuit, truncation: bool = True) -> Rewritten:
    """Copy ``circuit`` with every averaged save turned per-shot, and describe how each label
    is merged. A top-level ``save_density_matrix`` becomes a per-shot ``save_statevector``
    (folded back to the reduced ρ with ZHERK) where that keeps Aer's qubit truncation — the
    operations Aer simulates, hence every random draw — unchanged (see :func:`ancestry`);
    elsewhere a per-shot ``save_density_matrix``. ``truncation``: Aer's
    ``enable_truncation``."""
    out = Rewritten(circuit)
    changed = False
    top_ancestry = ancestry(circuit) if truncation else None

    def visit(circ, top: bool):
        nonlocal changed
        new_data = []
        dirty = False
        for index, inst in enumerate(circ.data):
            op = inst.operation
            if is_save(op):
                state_qubits = None
                if top and not truncation:
                    state_qubits = tuple(range(circ.num_qubits))
                elif top and top_ancestry is not None:
                    if top_ancestry.running[index] == top_ancestry.active:
                        state_qubits = tuple(sorted(top_ancestry.active))
                new_inst = _rewrite_save(circ, inst, state_qubits, out.specs)
            elif getattr(op, "blocks", None):
                blocks = [visit(block, False) for block in op.blocks]
                if all(new is old for new, old in zip(blocks, op.blocks, strict=True)):
                    new_inst = inst
                else:
                    new_inst = inst.replace(operation=op.replace_blocks(blocks))
            else:
                new_inst = inst
            dirty |= new_inst is not inst
            new_data.append(new_inst)
        if not dirty:
            return circ
        changed = True
        new_circ = circ.copy_empty_like()
        for inst in new_data:
            new_circ.append(inst, copy=False)
        return new_circ

    out.circuit = visit(circuit, True)
    if not changed:
        out.circuit = circuit
    return out


def _rewrite_save(circ, inst, state_qubits, specs: dict):
    """One save instruction, rewritten (see :func:`rewrite_circuit`); ``state_qubits``: the
    qubits a replacing per-shot ``save_statevector`` may cover, or None (no replacement)."""
    op = inst.operation
    subtype = save_subtype(op)
    conditional = subtype.startswith("c_")
    base = subtype[2:] if conditional else subtype
    label = _label_of(op)
    save_type = _save_type_name(op)
    if base == "average" and save_type in DENSITY_SAVES and state_qubits is not None:
        position = {q: i for i, q in enumerate(state_qubits)}
        keep = tuple(position[circ.find_bit(q).index] for q in inst.qubits)
        if keep == tuple(range(len(state_qubits))):
            keep = None
        new_op = SaveStatevector(
            len(state_qubits), label=label, pershot=True, conditional=conditional
        )
        specs[label] = LabelSpec(
            label, "state", conditional, save_type, subtype, keep, len(state_qubits)
        )
        qubits = tuple(circ.qubits[i] for i in state_qubits)
        return inst.replace(operation=new_op, qubits=qubits)
    if base == "average":
        new_op = copy.copy(op)
        set_save_subtype(new_op, "c_list" if conditional else "list")
        kind = "density" if save_type in DENSITY_SAVES else "mean"
        width = len(inst.qubits)
        specs[label] = LabelSpec(label, kind, conditional, save_type, subtype, width=width)
        return inst.replace(operation=new_op)
    if base == "list" and save_type in STATE_SAVES:
        avg = "c_average" if conditional else "average"
        width = len(inst.qubits)
        specs[label] = LabelSpec(
            label, "state", conditional, "save_density_matrix", avg, width=width
        )
    elif base == "list" and save_type in DENSITY_SAVES:
        avg = "c_average" if conditional else "average"
        width = len(inst.qubits)
        specs[label] = LabelSpec(
            label, "density", conditional, "save_density_matrix", avg, width=width
        )
    elif base == "list":
        specs[label] = LabelSpec(label, "concat", conditional, save_type, subtype)
    elif base == "accum":
        specs[label] = LabelSpec(label, "sum", conditional, save_type, subtype)
    else:
        specs[label] = LabelSpec(label, "last", conditional, save_type, subtype)
    return inst
