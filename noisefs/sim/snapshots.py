"""Snapshot points, the saves that take them, and the executed circuit as text.

A snapshot point is a *step* ``k``: the number of top-level instructions of the executed
circuit (``qc.data``) that have run before the snapshot. ``0`` is the initial state and
``len(qc.data)`` the end; the end is always the last step. A step after which only barriers
follow collapses with the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.circuit import CircuitInstruction

from noisefs.aer_private import unchecked_append
from noisefs.errors import CircuitError, InputError, one_line
from noisefs.sim.translate import layer_levels

__all__ = ["SNAPSHOT_MODES", "executed_qasm", "insert_saves", "snapshot_points"]

SNAPSHOT_MODES = "final, barriers, layers or every:N (N a whole number >= 1)"


def _parse_mode(mode: str) -> tuple[str, int]:
    if not isinstance(mode, str):
        raise InputError(f"snapshot mode must be {SNAPSHOT_MODES}, not {mode!r}")
    text = mode.strip().lower()
    if text in ("final", "barriers", "layers"):
        return text, 0
    match = re.fullmatch(r"every:(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return "every", int(match.group(1))
    raise InputError(f"unknown snapshot mode {mode!r}: use {SNAPSHOT_MODES}")


def snapshot_points(qc: QuantumCircuit, mode: str) -> list[int]:
    """Sorted unique steps (top-level instructions executed before each snapshot).

    * ``final``: ``[len(qc.data)]``.
    * ``barriers``: after each top-level barrier (step ``i + 1`` for a barrier at ``i``) and
      the end.
    * ``layers``: after each ASAP layer of non-barrier instructions that is a prefix of
      ``qc.data`` (every layer, for a circuit from :func:`~noisefs.sim.translate.translate`),
      and the end.
    * ``every:N``: after every ``N``-th top-level non-barrier instruction, and the end.

    A step followed only by barriers collapses with the end. Bad modes raise
    :class:`InputError`.
    """
    kind, every = _parse_mode(mode)
    data = qc.data
    end = len(data)
    is_barrier = [inst.operation.name == "barrier" for inst in data]
    steps: set[int] = {end}
    if kind == "barriers":
        steps |= {i + 1 for i, b in enumerate(is_barrier) if b}
    elif kind == "every":
        count = 0
        for i, b in enumerate(is_barrier):
            if not b:
                count += 1
                if count % every == 0:
                    steps.add(i + 1)
    elif kind == "layers":
        levels = [layer for (layer, bar) in layer_levels(data)]
        ops = [i for i in range(end) if not is_barrier[i]]
        # a cut after op ops[j] is exact when every op so far is in a layer below every op after.
        suffix_min = [0] * (len(ops) + 1)
        suffix_min[len(ops)] = 1 << 62
        for j in range(len(ops) - 1, -1, -1):
            suffix_min[j] = min(levels[ops[j]], suffix_min[j + 1])
        prefix_max = 0
        for j, i in enumerate(ops):
            prefix_max = max(prefix_max, levels[i])
            if prefix_max < suffix_min[j + 1]:
                steps.add(i + 1)
    # steps followed only by barriers are the end
    tail = end
    while tail > 0 and is_barrier[tail - 1]:
        tail -= 1
    return sorted({end if s >= tail else s for s in steps})


def insert_saves(
    qc: QuantumCircuit, steps: Iterable[int], label_prefix: str = "s"
) -> tuple[QuantumCircuit, list[str]]:
    """A copy with ``save_statevector(label=f"{label_prefix}{j}", pershot=True)`` on all qubits
    after ``steps[j]`` top-level instructions; returns it and the labels in order."""
    from qiskit_aer.library import SaveStatevector  # lazy: Aer, not at import

    steps = list(steps)
    end = len(qc.data)
    if any(not isinstance(s, int) or isinstance(s, bool) for s in steps):
        raise ValueError(f"steps must be integers, not {steps!r}")
    if steps != sorted(set(steps)) or (steps and (steps[0] < 0 or steps[-1] > end)):
        raise ValueError(f"steps must be sorted, unique and within 0..{end}: {steps!r}")
    labels = [f"{label_prefix}{j}" for j in range(len(steps))]
    saves: dict[int, str] = dict(zip(steps, labels, strict=True))
    out = qc.copy_empty_like()
    append = unchecked_append(out)
    qubits = tuple(qc.qubits)

    def save(step: int) -> None:
        if step in saves:
            op = SaveStatevector(qc.num_qubits, label=saves[step], pershot=True)
            append(CircuitInstruction(op, qubits, ()))

    for i, inst in enumerate(qc.data):
        save(i)
        append(inst)
    save(end)
    return out, labels


def executed_qasm(qc: QuantumCircuit) -> str:
    """OpenQASM 2 text of the executed circuit, or OpenQASM 3 when it has control flow.

    :func:`~noisefs.sim.qasm.load_circuit` reads it back to a circuit Aer simulates
    identically (the global phase, which no density matrix sees, is not written; angles
    within ~1e-12 are written as multiples of pi). The OpenQASM 2 text uses ``sx``, so plain
    ``qiskit.qasm2.loads`` needs ``custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS``.
    """
    try:
        return qasm2.dumps(qc)
    except Exception:
        pass
    try:
        return qasm3.dumps(qc)
    except Exception as exc:
        raise CircuitError(
            f"cannot write the executed circuit as OpenQASM: {one_line(exc)}"
        ) from None
