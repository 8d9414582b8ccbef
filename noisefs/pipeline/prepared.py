"""A run's circuit made ready: snapshot saves inserted, the noise model built, and what the
sums keep (ρ over all qubits, over ``--keep-qubits``, or none above ``--max-dm-qubits``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from noisefs.errors import InputError, NoiseParameterError
from noisefs.observables import ObservableSet
from noisefs.options import RunOptions
from noisefs.sim.circuit import executed_qasm, insert_saves, prepare, snapshot_points
from noisefs.sim.device import DeviceNoise
from noisefs.sim.device_layout import DeviceLayout
from noisefs.sim.noise_source import NoiseSource


@dataclass(frozen=True)
class PreparedRun:
    """The circuit with its saves, the noise, and what the sums keep.

    ``num_qubits`` are the simulated qubits; ``num_user`` of them are the circuit's own (on a
    device, routing may pass through spare ones, which come after them). ``orders`` put each
    snapshot into the user's qubit order (``None``: it is in that order already)."""

    prepared: object  # noisefs.sim.circuit.PreparedCircuit
    name: str
    num_qubits: int
    num_user: int
    noise: NoiseSource
    noise_model: object
    steps: tuple[int, ...]
    circuit_with_saves: object
    labels: tuple[str, ...]
    executed_qasm: str
    density: str  # "full" | "reduced" | "none"
    keep: tuple[int, ...] | None
    observables: ObservableSet | None  # None when none were asked for
    orders: tuple[tuple[int, ...] | None, ...] | None
    device: dict | None  # the device's record and where the qubits went

    def kept_dim(self, keep: tuple[int, ...] | None = None) -> int:
        keep = self.keep if keep is None else keep
        return {"full": 2**self.num_qubits, "reduced": 2 ** len(keep or ()), "none": 0}[
            self.density
        ]


def prepare_run(options: RunOptions, noise: NoiseSource | DeviceNoise) -> PreparedRun:
    """Parse and translate the circuit, check the noise against it, insert the saves."""
    device = noise if isinstance(noise, DeviceNoise) else None
    prepared = prepare(
        options.circuit,
        optimization_level=options.optimize,
        seed_transpiler=options.seed_transpiler,
        basis=() if device else noise.basis_gates,
        device=device.backend if device else None,
    )
    # messages name the file when there is one
    name = str(options.circuit) if isinstance(options.circuit, Path) else prepared.name
    n = prepared.num_qubits
    layout = prepared.layout
    try:
        if device is not None:
            noise = device.bind(layout.physical, prepared.circuit)
        noise.validate(n)
        noise.check_circuit(prepared.circuit)
    except NoiseParameterError as exc:
        raise NoiseParameterError(f"{name}: {exc}") from None
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    steps = snapshot_points(prepared.circuit, options.snapshots)
    circuit_with_saves, labels = insert_saves(prepared.circuit, steps)
    num_user = layout.num_user if layout else n
    keep = options.keep_qubits
    if keep is not None:
        if keep[-1] >= num_user:
            raise InputError(
                f"--keep-qubits names qubit {keep[-1]} but {name} has {num_user} qubits"
            )
    elif num_user < n:  # spare device qubits are traced out
        keep = tuple(range(num_user))
    if options.keep_qubits is not None:
        density = "reduced"
    elif keep is not None:
        density = "reduced" if len(keep) <= options.max_dm_qubits else "none"
    else:
        density = "full" if n <= options.max_dm_qubits else "none"
    try:
        observables = (
            ObservableSet(n, options.observables, label_width=num_user)
            if options.observables
            else None
        )
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    orders = None if layout is None else _step_orders(prepared.circuit, steps, layout, name)
    return PreparedRun(
        prepared=prepared,
        name=name,
        num_qubits=n,
        num_user=num_user,
        noise=noise,
        noise_model=noise.model_for(n),
        steps=tuple(int(s) for s in steps),
        circuit_with_saves=circuit_with_saves,
        labels=tuple(labels),
        executed_qasm=executed_qasm(prepared.circuit),
        density=density,
        keep=keep,
        observables=observables,
        orders=orders,
        device=None if device is None else {**device.to_meta(), **layout.to_meta()},
    )


def _step_orders(circuit, steps, layout: DeviceLayout, name: str) -> tuple | None:
    """The qubit order of each snapshot step (see :meth:`DeviceLayout.order`)."""
    barriers = [i for i, inst in enumerate(circuit.data) if inst.operation.name == "barrier"]
    orders = []
    for step in steps:
        if step >= len(circuit.data):
            orders.append(layout.order(None))
        elif step - 1 in barriers:  # "barriers" snapshots come right after their barrier
            orders.append(layout.order(barriers.index(step - 1)))
        elif not layout.moves:
            orders.append(layout.order(None))
        else:
            raise InputError(
                f"{name}: on this device routing moves qubits during the circuit, so a "
                "snapshot is only placed at a barrier or at the end: use --snapshots "
                "barriers or final"
            )
    identity = tuple(range(circuit.num_qubits))
    found = tuple(None if order == identity else order for order in orders)
    return None if all(order is None for order in found) else found


def memory_hints(options: RunOptions, run: PreparedRun, batch: int) -> list[str]:
    """What would make this run smaller, for the too-large message."""
    hints = []
    if run.density == "full":
        hints.append("--max-dm-qubits below the qubit count or --keep-qubits")
    if options.store == "dense":
        hints.append("--store factored")
    if batch > 1:
        hints.append("a smaller --batch")
    if len(run.steps) > 1:
        hints.append("--snapshots final")
    return hints


def executor_slots(options: RunOptions) -> int:
    """Batches in flight at once for these options (see the executors)."""
    return 2 * options.workers if options.workers > 1 else 2
