"""The reproducibility oracle (docs/contract.md "Reproducibility: the oracle"): Aer's own
average for a recorded run.

``aer_reference(meta)`` rebuilds the executed circuit and the noise model that a result
file records and lets Aer average ``trajectories`` shots with ``seed_simulator = seed``
(``save_density_matrix`` appended). A noisefs result must equal it to 1e-8; a lost,
duplicated or corrupted batch shows up as a difference of order 1/K.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from noisefs.aggregate.linalg import partial_trace_dense, reorder_qubits
from noisefs.observables import ObservableSet
from noisefs.sim.noise_source import noise_from_meta


def executed_circuit(meta: dict):
    """The executed circuit (without saves) that ``meta['executed_qasm']`` records."""
    from noisefs.sim.circuit import load_circuit  # lazy: qiskit, when the oracle runs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "executed.qasm"
        path.write_text(meta["executed_qasm"], encoding="utf-8")
        return load_circuit(path)


def aer_reference(meta: dict, trajectories: int | None = None) -> np.ndarray:
    """Aer's averaged final density matrix for the run that ``meta`` describes."""
    from qiskit_aer import AerSimulator  # lazy: Aer, when the oracle runs

    circuit = executed_circuit(meta)
    circuit.save_density_matrix(label="rho")
    model = noise_from_meta(meta["noise"]).model_for(int(meta["num_qubits"]))
    shots = int(meta["trajectories"] if trajectories is None else trajectories)
    simulator = AerSimulator(method="statevector", noise_model=model)
    result = simulator.run(circuit, shots=shots, seed_simulator=int(meta["seed"])).result()
    return _as_recorded(meta, [None], [np.asarray(result.data(0)["rho"])])[0]


def aer_reference_steps(meta: dict, steps) -> np.ndarray:
    """Aer's averaged density matrix after each of ``steps`` instructions of the executed
    circuit. Saves consume no randomness, and the executed circuit is recorded in the
    order Aer runs it, so every trajectory is the same as in the run."""

    def save(circuit, step: int) -> None:
        circuit.save_density_matrix(label=f"rho{step}")

    data = _run_with_saves(meta, steps, save)
    return _as_recorded(meta, steps, [np.asarray(data[f"rho{int(step)}"]) for step in steps])


def _step_order(meta: dict, step) -> tuple[int, ...] | None:
    """The qubit order the run put the snapshot at ``step`` into (a device's routing)."""
    order = (meta.get("step_orders") or {}).get(str(step))
    return None if order is None else tuple(order)


def _as_recorded(meta: dict, steps, rhos: list[np.ndarray]) -> np.ndarray:
    """Aer's density matrices as the result holds them: in the user's qubit order, the spare
    qubits of a device traced out."""
    n = int(meta["num_qubits"])
    device = meta.get("device")
    user = int(device["user_qubits"]) if device else n
    out = []
    for step, rho in zip(steps, rhos, strict=True):
        order = _step_order(meta, step)
        if order is not None:
            rho = reorder_qubits(rho[None], order, n, axes=2)[0]
        if user < n:
            rho = partial_trace_dense(rho[None], n, tuple(range(user)))
        out.append(rho)
    return np.stack(out)


def aer_reference_expectations(meta: dict, steps) -> np.ndarray:
    """Aer's own average of each observable the run recorded (``meta["observables"]``) at
    each of ``steps``: ``save_expectation_value`` over the same shots and seeds. (S, M)."""
    observables = ObservableSet.from_meta(meta["observables"], int(meta["num_qubits"]))
    qubits = list(range(observables.num_qubits))

    def save(circuit, step: int) -> None:
        order = _step_order(meta, step)
        placed = observables if order is None else observables.remapped(order)
        for m, op in enumerate(placed.sparse_pauli_ops()):
            circuit.save_expectation_value(op, qubits, label=f"obs{step}_{m}")

    data = _run_with_saves(meta, steps, save)
    return np.array(
        [[float(np.real(data[f"obs{int(s)}_{m}"])) for m in range(len(observables))] for s in steps]
    )


def _run_with_saves(meta: dict, steps, save) -> dict:
    """Run the executed circuit in Aer with ``save(circuit, step)`` before each of ``steps``
    (the step past the last instruction: at the end), K shots from the run's seed."""
    from qiskit_aer import AerSimulator  # lazy: Aer, when the oracle runs

    circuit = executed_circuit(meta)
    with_saves = circuit.copy_empty_like()
    wanted = sorted(set(int(s) for s in steps))
    for index, instruction in enumerate(circuit.data):
        for step in wanted:
            if step == index:
                save(with_saves, step)
        with_saves.append(instruction)
    if len(circuit.data) in wanted:
        save(with_saves, len(circuit.data))
    model = noise_from_meta(meta["noise"]).model_for(int(meta["num_qubits"]))
    simulator = AerSimulator(method="statevector", noise_model=model)
    result = simulator.run(
        with_saves, shots=int(meta["trajectories"]), seed_simulator=int(meta["seed"])
    ).result()
    return result.data(0)
