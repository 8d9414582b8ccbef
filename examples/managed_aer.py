"""noisefs.managed around ordinary Aer code: the same results, bounded memory.

    python examples/managed_aer.py

A 6-qubit noisy circuit with per-shot statevector saves at three points and a
save_density_matrix over two qubits, run with AerSimulator(...).run(...) exactly as one
would without noisefs — once inside ``noisefs.managed`` (batches of 256 shots, per-shot states
through a bounded arena, averaged) and once plain, with the same seed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error

import noisefs


def circuit(num_qubits: int = 6) -> QuantumCircuit:
    qc = QuantumCircuit(num_qubits)
    for layer in range(3):
        for q in range(num_qubits):
            qc.rx(0.4 + 0.1 * q, q)
        for q in range(num_qubits - 1):
            qc.cx(q, q + 1)
        qc.save_statevector(label=f"layer{layer}", pershot=True)
    qc.save_density_matrix([0, 1], label="rho01")
    return qc


def noise() -> NoiseModel:
    model = NoiseModel()
    relax = thermal_relaxation_error(50e-6, 70e-6, 50e-9)
    model.add_all_qubit_quantum_error(depolarizing_error(0.002, 1).compose(relax), ["rx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    return model


# A private arena: a quota given to an arena is stored in it, for every later user of that
# root (leave root out to use the default arena and keep its stored bounds).
ROOT = Path("/dev/shm") / f"noisefs-managed-example-{os.getuid()}"


@noisefs.managed(quota="64MiB", batch=256, root=ROOT)
def experiment(shots: int, seed: int):
    """Ordinary Aer code: nothing here knows about noisefs."""
    return AerSimulator(noise_model=noise()).run(circuit(), shots=shots, seed_simulator=seed)


def main() -> None:
    shots, seed = 2000, 7
    try:
        managed = experiment(shots, seed).result()  # result() works after the scope exited
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)
    print("noisefs:", managed.metadata["noisefs"])
    rho = managed.data()["layer2"]  # a DensityMatrix: the average of the 2000 per-shot states
    print("layer2 purity:", float(np.real(rho.purity())))

    plain = AerSimulator(noise_model=noise()).run(circuit(), shots=shots, seed_simulator=seed)
    states = plain.result().data()["layer2"]  # 2000 Statevectors held in memory
    average = np.mean([np.outer(np.asarray(s), np.asarray(s).conj()) for s in states], axis=0)
    print("max |managed - plain| (layer2):", float(np.max(np.abs(np.asarray(rho) - average))))
    rho01 = np.asarray(managed.data()["rho01"]) - np.asarray(plain.result().data()["rho01"])
    print("max |managed - plain| (rho01):", float(np.max(np.abs(rho01))))


if __name__ == "__main__":
    main()
