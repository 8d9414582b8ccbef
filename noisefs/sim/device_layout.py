"""A circuit made ready for a device: laid out, routed and translated to the device's target,
then cut down to the physical qubits it uses, with the place of every user qubit at each
snapshot point.

The transpilation runs in two parts of Qiskit's preset pass manager for the device: layout
and routing first, so that the routed circuit still holds the ``swap`` gates routing
inserted; walking it gives where each of the user's qubits is at every barrier. Translation
and optimisation follow (neither moves a qubit, nor anything across a barrier). The
simulation then runs on the active physical qubits only — a 5-qubit circuit on a 127-qubit
device simulates 5 qubits (or a few more, where routing passes through spare ones) — and the
snapshots are put back into the user's qubit order before they are folded.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit
from qiskit.circuit import ControlFlowOp, Gate
from qiskit.transpiler import StagedPassManager, generate_preset_pass_manager

from noisefs.aer_private import unchecked_append
from noisefs.errors import CircuitError, InputError, one_line
from noisefs.sim.synthesis_plugins import lazy_synthesis_plugins

__all__ = ["DeviceLayout", "compact_to_active", "route_to_device"]

_ROUTING_STAGES = ("init", "layout", "routing")
_TRANSLATION_STAGES = ("translation", "optimization")


@dataclass(frozen=True)
class DeviceLayout:
    """Where the user's qubits went.

    ``physical[c]`` is the device qubit that simulated qubit ``c`` stands for; simulated
    qubits ``0 .. num_user - 1`` hold the user's qubits 0, 1, ... at the end of the circuit,
    the rest are spare device qubits that routing passed through. ``orders_at_barriers[k]``
    (and ``final_order``) list, for each user qubit, the simulated qubit holding it at the
    k-th barrier (at the end): a snapshot there is reordered by it into the user's order."""

    physical: tuple[int, ...]
    num_user: int
    initial_order: tuple[int, ...]
    orders_at_barriers: tuple[tuple[int, ...], ...]
    final_order: tuple[int, ...]

    @property
    def moves(self) -> bool:
        """Whether any user qubit changes place during the circuit."""
        orders = (self.initial_order, *self.orders_at_barriers)
        return any(order != self.final_order for order in orders)

    def order(self, barrier: int | None) -> tuple[int, ...]:
        """The simulated qubit holding each user qubit at the ``barrier``-th barrier
        (0-based) or at the end (``None``), followed by the spare qubits in ascending order:
        the permutation that puts a snapshot taken there into the user's order."""
        user = self.final_order if barrier is None else self.orders_at_barriers[barrier]
        spare = sorted(set(range(len(self.physical))) - set(user))
        return tuple(user) + tuple(spare)

    def to_meta(self) -> dict:
        return {
            "physical_qubits": list(self.physical),
            "user_qubits": self.num_user,
            "initial_order": list(self.initial_order),
            "orders_at_barriers": [list(o) for o in self.orders_at_barriers],
            "final_order": list(self.final_order),
        }


def _staged(preset, names: tuple[str, ...]):
    stages = {}
    for name in names:
        for slot in (f"pre_{name}", name, f"post_{name}"):
            if getattr(preset, slot, None) is not None:
                stages[slot] = getattr(preset, slot)
    return StagedPassManager(stages=list(names), **stages)


def _mark_user_swaps(circuit: QuantumCircuit) -> QuantumCircuit:
    """The user's own ``swap`` gates renamed (same definition), so that the walk below sees
    only the swaps routing inserts."""
    if not any(inst.operation.name == "swap" for inst in circuit.data):
        return circuit
    definition = QuantumCircuit(2, name="swap")
    definition.swap(0, 1)
    user_swap = Gate("user_swap", 2, [])
    user_swap.definition = definition.decompose()
    out = circuit.copy_empty_like()
    append = unchecked_append(out)
    for inst in circuit.data:
        append(inst.replace(operation=user_swap) if inst.operation.name == "swap" else inst)
    return out


def _walk(routed: QuantumCircuit, num_user: int) -> list[dict[int, int]]:
    """Each user qubit's physical place at the start of ``routed``, at every barrier and at
    its end."""
    initial = routed.layout.initial_index_layout(filter_ancillas=False)
    place = {v: initial[v] for v in range(num_user)}
    occupant = {p: v for v, p in place.items()}
    at_barriers = [dict(place)]
    for inst in routed.data:
        name = inst.operation.name
        if name == "barrier":
            at_barriers.append(dict(place))
        elif name == "swap":
            a, b = (routed.find_bit(q).index for q in inst.qubits)
            va, vb = occupant.pop(a, None), occupant.pop(b, None)
            if va is not None:
                place[va], occupant[b] = b, va
            if vb is not None:
                place[vb], occupant[a] = a, vb
    return [*at_barriers, place]


def route_to_device(
    circuit: QuantumCircuit, backend, optimization_level: int, seed_transpiler: int
) -> tuple[QuantumCircuit, DeviceLayout]:
    """``circuit`` (final measurements already stripped) transpiled to ``backend``'s target
    and cut down to its active qubits, with its :class:`DeviceLayout`."""
    if any(isinstance(inst.operation, ControlFlowOp) for inst in circuit.data):
        raise InputError("control flow is not supported with a device's noise yet")
    if optimization_level > 2:
        # level 3 moves the laid-out circuit onto other device qubits after routing (a post
        # layout), which the walk below cannot see
        raise InputError("--optimize 3 is not supported with a device's noise; use 2 or lower")
    num_user = circuit.num_qubits
    if num_user > backend.num_qubits:
        raise InputError(
            f"the circuit has {num_user} qubits but {backend.name} has {backend.num_qubits}"
        )
    try:
        with lazy_synthesis_plugins():
            preset = generate_preset_pass_manager(
                optimization_level=optimization_level,
                backend=backend,
                seed_transpiler=seed_transpiler,
            )
        routed = _staged(preset, _ROUTING_STAGES).run(_mark_user_swaps(circuit))
        *at_barriers, final = _walk(routed, num_user)
        translated = _staged(preset, _TRANSLATION_STAGES).run(routed)
    except InputError:
        raise
    except Exception as exc:
        raise CircuitError(
            f"cannot transpile the circuit to {backend.name}: {one_line(exc)}"
        ) from None
    expected = routed.layout.final_index_layout(filter_ancillas=True)
    if [final[v] for v in range(num_user)] != list(expected):
        raise InputError(
            f"--optimize {optimization_level} permutes qubits in a way noisefs cannot follow on "
            "a device; use --optimize 1 or lower"
        )
    return compact_to_active(translated, num_user, at_barriers[0], at_barriers[1:], final)


def compact_to_active(
    translated: QuantumCircuit,
    num_user: int,
    initial: dict[int, int],
    at_barriers: list[dict[int, int]],
    final: dict[int, int],
) -> tuple[QuantumCircuit, DeviceLayout]:
    """``translated`` (on every device qubit) cut down to the qubits it acts on, the user's
    first in their order at the end (``final``: user qubit → device qubit), then the spare
    ones; ``initial`` and ``at_barriers`` give each user qubit's device qubit at the start
    and at every barrier."""
    index = {q: translated.find_bit(q).index for q in translated.qubits}
    active = {
        index[q]
        for inst in translated.data
        if inst.operation.name != "barrier"
        for q in inst.qubits
    }
    user_places = [final[v] for v in range(num_user)]
    spare = sorted(active - set(user_places))
    physical = tuple(user_places + spare)
    simulated = {p: c for c, p in enumerate(physical)}
    out = QuantumCircuit(len(physical), name=translated.name, global_phase=translated.global_phase)
    for register in translated.cregs:
        out.add_register(register)
    loose = [c for c in translated.clbits if not translated.find_bit(c).registers]
    if loose:
        out.add_bits(loose)
    for inst in translated.data:
        qubits = [out.qubits[simulated[index[q]]] for q in inst.qubits if index[q] in simulated]
        if inst.operation.name == "barrier":
            if qubits:
                out.barrier(*qubits)
            continue
        out.append(inst.operation, qubits, inst.clbits)
    layout = DeviceLayout(
        physical=physical,
        num_user=num_user,
        initial_order=tuple(simulated[initial[v]] for v in range(num_user)),
        orders_at_barriers=tuple(
            tuple(simulated[places[v]] for v in range(num_user)) for places in at_barriers
        ),
        final_order=tuple(range(num_user)),
    )
    return out, layout
