"""A run's circuit made ready: snapshot saves inserted, the noise model built, and what the
sums keep (ρ over all qubits, over ``--keep-qubits``, or none above ``--max-dm-qubits``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from noisefs.errors import InputError, NoiseParameterError
from noisefs.observables import ObservableSet
from noisefs.options import RunOptions
from noisefs.sim.noise_source import NoiseSource


@dataclass(frozen=True)
class PreparedRun:
    """The circuit with its saves, the noise model, and what the sums keep."""

    prepared: object  # noisefs.sim.circuit.PreparedCircuit
    name: str
    num_qubits: int
    noise_model: object
    steps: tuple[int, ...]
    circuit_with_saves: object
    labels: tuple[str, ...]
    executed_qasm: str
    density: str  # "full" | "reduced" | "none"
    observables: ObservableSet | None  # None when none were asked for

    def kept_dim(self, keep: tuple[int, ...] | None) -> int:
        return {"full": 2**self.num_qubits, "reduced": 2 ** len(keep or ()), "none": 0}[
            self.density
        ]


def prepare_run(options: RunOptions, noise: NoiseSource) -> PreparedRun:
    """Parse and translate the circuit, check the noise against it, insert the saves."""
    from noisefs.sim.circuit import executed_qasm, insert_saves, prepare, snapshot_points

    prepared = prepare(
        options.circuit,
        optimization_level=options.optimize,
        seed_transpiler=options.seed_transpiler,
        basis=noise.basis_gates,
    )
    # messages name the file when there is one
    name = str(options.circuit) if isinstance(options.circuit, Path) else prepared.name
    n = prepared.num_qubits
    try:
        noise.validate(n)
        noise.check_circuit(prepared.circuit)
    except NoiseParameterError as exc:
        raise NoiseParameterError(f"{name}: {exc}") from None
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    steps = snapshot_points(prepared.circuit, options.snapshots)
    circuit_with_saves, labels = insert_saves(prepared.circuit, steps)
    keep = options.keep_qubits
    if keep is not None:
        if keep[-1] >= n:
            raise InputError(f"--keep-qubits names qubit {keep[-1]} but {name} has {n} qubits")
        density = "reduced"
    else:
        density = "full" if n <= options.max_dm_qubits else "none"
    try:
        observables = ObservableSet(n, options.observables) if options.observables else None
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    return PreparedRun(
        prepared=prepared,
        name=name,
        num_qubits=n,
        noise_model=noise.model_for(n),
        steps=tuple(int(s) for s in steps),
        circuit_with_saves=circuit_with_saves,
        labels=tuple(labels),
        executed_qasm=executed_qasm(prepared.circuit),
        density=density,
        observables=observables,
    )


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
