"""Final measurements out: the state before readout is what a run averages.

A measurement is final when nothing after it acts on its qubit and nothing after it reads
the value it wrote. Barriers do not act; a later measurement of the same qubit does (of
``measure q->c0; measure q->c1`` only the second is final). A later measurement into the
same bit overwrites the value (it is not a read), so it does not keep an earlier one alive;
a later condition (``if``/``while``/``switch``) on the bit or on its register is a read.
Measurements inside ``if``/``switch`` blocks are stripped by the same rule; those inside
loops are always kept (the next iteration follows them). Registers and clbits stay.
"""

from __future__ import annotations

from collections.abc import Sequence

from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction, ClassicalRegister, Clbit
from qiskit.circuit.classical import expr

from noisefs.aer_private import unchecked_append

__all__ = ["read_bits", "strip_counted", "strip_final_measurements"]


def _expr_bits(value: object) -> set[Clbit]:
    bits: set[Clbit] = set()
    if value is None:
        return bits
    if isinstance(value, tuple):  # legacy (Clbit | ClassicalRegister, int) condition
        value = value[0]
    if isinstance(value, Clbit):
        return {value}
    if isinstance(value, ClassicalRegister):
        return set(value)
    if isinstance(value, expr.Expr):
        for var in expr.iter_vars(value):
            bits |= _expr_bits(var.var)
    return bits


def read_bits(inst: CircuitInstruction) -> set[Clbit]:
    """Clbits an instruction may read: its cargs (conservative) and any condition/target/rvalue."""
    op = inst.operation
    bits = set(inst.clbits)
    for attribute in ("condition", "target", "rvalue", "lvalue"):
        bits |= _expr_bits(getattr(op, attribute, None))
    return bits


def _strip_data(
    data: Sequence[CircuitInstruction], touched: set, live: set
) -> tuple[list[CircuitInstruction], int]:
    """Backward walk; ``touched``: qubits acted on later; ``live``: clbits read later."""
    kept: list[CircuitInstruction] = []
    removed = 0
    for inst in reversed(data):
        op = inst.operation
        name = op.name
        if name == "measure":
            qubit, clbit = inst.qubits[0], inst.clbits[0]
            if qubit not in touched and clbit not in live:
                removed += 1
                touched.add(qubit)  # it still acts on its qubit: an earlier one is not final
                continue
            touched.add(qubit)
            live.discard(clbit)  # the value before this measurement is overwritten here
            kept.append(inst)
            continue
        if name == "barrier":
            kept.append(inst)
            continue
        if name in ("if_else", "switch_case"):
            blocks = []
            for block in op.blocks:
                qmap = dict(zip(block.qubits, inst.qubits, strict=True))
                cmap = dict(zip(block.clbits, inst.clbits, strict=True))
                inner_touched = {b for b, outer in qmap.items() if outer in touched}
                inner_live = {b for b, outer in cmap.items() if outer in live}
                new_data, n = _strip_data(block.data, inner_touched, inner_live)
                removed += n
                if n:
                    new_block = block.copy_empty_like()
                    append = unchecked_append(new_block)
                    for item in new_data:
                        append(item)
                    block = new_block
                blocks.append(block)
            inst = inst.replace(operation=op.replace_blocks(blocks))
        touched.update(inst.qubits)
        live |= read_bits(inst)
        kept.append(inst)
    kept.reverse()
    return kept, removed


def strip_counted(qc: QuantumCircuit) -> tuple[QuantumCircuit, int]:
    """:func:`strip_final_measurements` and the number of measurements it removed."""
    data, removed = _strip_data(qc.data, set(), set())
    out = qc.copy_empty_like()
    append = unchecked_append(out)
    for inst in data:
        append(inst)
    return out, removed


def strip_final_measurements(qc: QuantumCircuit) -> QuantumCircuit:
    """A copy without final measurements (see the module docstring for the exact rule).

    Unlike Qiskit's ``remove_final_measurements`` this keeps a measurement whose bit a later
    condition reads, and keeps every register and clbit.
    """
    return strip_counted(qc)[0]
