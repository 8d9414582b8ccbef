"""Plan a managed job: which options are batched, passed through or refused; how saves are
rewritten so that every average is computed from per-shot data; how shots split into batches.

Aer seeds shot i of circuit instance k (a circuit, or one parameter bind of it) with
``seed_simulator + 2113·k + i`` (``controller_execute.hpp`` and ``circuit_executor.hpp``; read
in the sources of 0.15.1, 0.16.4, 0.17.2 and main, and held by the tests on 0.18.2). A batch covering shots [offset, offset + size) of every instance, run as one call
with ``seed_simulator = base + offset``, therefore draws exactly the numbers of the unbatched job.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from noisefs.aerscope.errors import UnbatchableJob

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

# Options whose presence (truthy) decides the job's fate before anything runs.
REFUSED_OPTIONS = {
    "shot_branching_enable": (
        "shot_branching_enable=True branches shots at measurements, so per-shot saves and their "
        "averages stop being per-trajectory (measured <Z> 0.0 vs 0.786); drop the option or run "
        "the job outside noisefs.managed"
    ),
}
PASSTHROUGH_OPTIONS = {
    "batched_shots_gpu": "batched_shots_gpu needs many shots per call (Aer batches on the GPU)",
    "executor": "a custom executor: Aer splits and submits the job itself",
    "max_job_size": "max_job_size: Aer splits and submits the job itself",
    "max_shot_size": "max_shot_size: Aer splits the shots itself",
}
# Methods whose shots are trajectories seeded shot by shot; every other method is passed
# through (density_matrix, superop and unitary sample measurements from one evolution).
BATCHED_METHODS = ("statevector", "automatic")
SEED_BOUND = 2**31  # Aer keeps seeds in 64 bits; base + 2113·k + shots must not overflow

STATE_SAVES = ("save_statevector",)
DENSITY_SAVES = ("save_density_matrix",)


def effective_option(backend: Any, run_options: dict, name: str, default: Any = None) -> Any:
    """The value Aer would use: the run option, else the backend's option, else ``default``."""
    if name in run_options:
        return run_options[name]
    return getattr(backend.options, name, default)


def total_shots(backend: Any, run_options: dict) -> int:
    """The job's shot count as an int (Aer accepts ``100.0``); raise for anything else."""
    shots = effective_option(backend, run_options, "shots", 1024)
    if shots is None:
        shots = 1024
    if isinstance(shots, bool):
        raise UnbatchableJob(f"shots must be a whole number, not {shots!r}")
    if isinstance(shots, float) and shots.is_integer():
        shots = int(shots)
    try:
        value = int(shots)
    except (TypeError, ValueError):
        raise UnbatchableJob(f"shots must be a whole number, not {shots!r}") from None
    if value != shots or value < 1:
        raise UnbatchableJob(f"shots must be a whole number >= 1, not {shots!r}")
    return value


def static_verdict(backend: Any, run_options: dict) -> str | None:
    """A reason to pass the job through unbatched, known before anything runs, or None.

    Raises :class:`UnbatchableJob` for an option that is refused outright."""
    for name, reason in REFUSED_OPTIONS.items():
        if effective_option(backend, run_options, name, False):
            raise UnbatchableJob(reason)
    for name, reason in PASSTHROUGH_OPTIONS.items():
        if effective_option(backend, run_options, name, None):
            return reason
    method = effective_option(backend, run_options, "method", "automatic") or "automatic"
    if method not in BATCHED_METHODS:
        return f"method {method!r}: only statevector trajectories are batched"
    device = effective_option(backend, run_options, "device", "CPU") or "CPU"
    if str(device).upper() != "CPU":
        return f"device {device!r}: only CPU runs are batched"
    return None


def draw_seed(backend: Any, run_options: dict) -> tuple[int, bool]:
    """The base seed (given, or drawn now) and whether it was drawn."""
    seed = effective_option(backend, run_options, "seed_simulator", None)
    if seed is None or (isinstance(seed, int) and seed < 0):
        return secrets.randbelow(SEED_BOUND), True
    return int(seed), False


# -- save rewriting -------------------------------------------------------------------


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


@dataclass
class Rewritten:
    """A circuit with its saves made per-shot, and the specs of its labels."""

    circuit: object
    specs: dict[str, LabelSpec] = field(default_factory=dict)


def _save_type_name(op) -> str:
    """The key Aer reports in ``result_types`` for this save (its instruction name)."""
    return op.name


def _is_save(op) -> bool:
    from qiskit_aer.library.save_instructions.save_data import SaveData

    return isinstance(op, SaveData)


def _label_of(op) -> str:
    return op.label if op.label else op.name


def rewrite_circuit(circuit: QuantumCircuit, truncation: bool = True) -> Rewritten:
    """Copy ``circuit`` with every averaged save turned per-shot, and describe how each label
    is merged. A top-level ``save_density_matrix`` becomes a per-shot ``save_statevector``
    (folded back to the reduced ρ with ZHERK) where that keeps Aer's qubit truncation — the
    operations Aer simulates, hence every random draw — unchanged (see :func:`ancestry`);
    elsewhere a per-shot ``save_density_matrix``. ``truncation``: Aer's
    ``enable_truncation``."""
    from qiskit_aer.library import SaveStatevector

    out = Rewritten(circuit)
    changed = False
    top_ancestry = ancestry(circuit) if truncation else None

    def visit(circ, top: bool):
        nonlocal changed
        new_data = []
        dirty = False
        for index, inst in enumerate(circ.data):
            op = inst.operation
            if _is_save(op):
                state_qubits = None
                if top and not truncation:
                    state_qubits = tuple(range(circ.num_qubits))
                elif top and top_ancestry is not None:
                    if top_ancestry.running[index] == top_ancestry.active:
                        state_qubits = tuple(sorted(top_ancestry.active))
                new_inst = _rewrite_save(circ, inst, state_qubits, out.specs, SaveStatevector)
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
        elif op.name in _RESULT_OPS or _is_save(op) or ancestors & qubits:
            ancestors |= qubits
            active |= qubits
            kept[index] = True
        running[index] = set(ancestors)
    return Ancestry(running, kept, active)


def _rewrite_save(circ, inst, state_qubits, specs: dict, save_statevector_cls):
    """One save instruction, rewritten (see :func:`rewrite_circuit`); ``state_qubits``: the
    qubits a replacing per-shot ``save_statevector`` may cover, or None (no replacement)."""
    op = inst.operation
    subtype = op._subtype
    conditional = subtype.startswith("c_")
    base = subtype[2:] if conditional else subtype
    label = _label_of(op)
    save_type = _save_type_name(op)
    if base == "average" and save_type in DENSITY_SAVES and state_qubits is not None:
        position = {q: i for i, q in enumerate(state_qubits)}
        keep = tuple(position[circ.find_bit(q).index] for q in inst.qubits)
        if keep == tuple(range(len(state_qubits))):
            keep = None
        new_op = save_statevector_cls(
            len(state_qubits), label=label, pershot=True, conditional=conditional
        )
        specs[label] = LabelSpec(
            label, "state", conditional, save_type, subtype, keep, len(state_qubits)
        )
        qubits = tuple(circ.qubits[i] for i in state_qubits)
        return inst.replace(operation=new_op, qubits=qubits)
    if base == "average":
        new_op = copy.copy(op)
        new_op._subtype = "c_list" if conditional else "list"
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
        if _is_save(op) or getattr(op, "blocks", None):
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
            if any(i.operation.name == "measure" or _is_save(i.operation) for i in later):
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


def binds_per_circuit(circuits: list, parameter_binds: list | None) -> list[int]:
    """How many experiments (results) each circuit gives: one per parameter bind."""
    if not parameter_binds:
        return [1] * len(circuits)
    counts = []
    for bind in parameter_binds:
        lengths = [len(v) if hasattr(v, "__len__") else 1 for v in bind.values()]
        counts.append(max(lengths) if lengths else 1)
    return counts


def bounded_batch(batch: int, specs: list[dict[str, LabelSpec]], budget: int) -> int:
    """``batch``, lowered so that one batch's per-shot states (every label of every
    experiment, as Aer returns them) fit in ``budget`` bytes; at least 1."""
    per_shot = sum(spec.shot_bytes() for labels in specs for spec in labels.values())
    if per_shot == 0:
        return batch
    return max(1, min(batch, budget // per_shot))


def plan_offsets(shots: int, batch: int) -> list[tuple[int, int]]:
    """(offset, size) of each batch."""
    return [(start, min(batch, shots - start)) for start in range(0, shots, batch)]
