"""A legacy trajectory script, pointed at a noisefs daemon's inbox.

The script as it was (one ``.npy`` per step in a temp dir on /dev/shm, unbounded):

    with TemporaryDirectory(dir="/dev/shm") as tmpdir:
        for step, rho in enumerate(states):
            np.save(f"{tmpdir}/step_{step}.npy", rho)

Pointed at the inbox, each trajectory's state at each step goes to
``<arena>/inbox/<run>/<step>/``; the daemon folds it into the running average and deletes
it, and ``touch <arena>/inbox/<run>/DONE`` makes it write ``<results>/<run>.npz``:

    noisefs daemon --arena /dev/shm/noisefs-$(id -u) --results results &
    python examples/legacy_writer.py --run ghz --trajectories 200
    python -c "import numpy as np; print(np.load('results/ghz.npz')['counts'])"

``--safe`` uses the safe writer protocol (write ``.name.tmp``, then rename to
``name.npy``); without it the plain ``np.save`` of the legacy script is used, which the
daemon accepts too (it waits until the writer has closed the file and its size matches
the header). ``--rho`` saves ρ = ψψ† instead of ψ (2ⁿ times larger, same average).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def trajectories(num_qubits: int, shots: int, seed: int):
    """Per-shot statevectors after each layer of a noisy GHZ circuit (Qiskit Aer)."""
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, thermal_relaxation_error

    circuit = QuantumCircuit(num_qubits)
    circuit.h(0)
    circuit.save_statevector(label="s0", pershot=True)
    for q in range(1, num_qubits):
        circuit.cx(0, q)
        circuit.save_statevector(label=f"s{q}", pershot=True)
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(thermal_relaxation_error(50e-6, 70e-6, 50e-9), ["h"])
    noise.add_all_qubit_quantum_error(
        thermal_relaxation_error(50e-6, 70e-6, 300e-9).expand(
            thermal_relaxation_error(50e-6, 70e-6, 300e-9)
        ),
        ["cx"],
    )
    sim = AerSimulator(method="statevector", noise_model=noise)
    data = sim.run(circuit, shots=shots, seed_simulator=seed).result().data(0)
    for shot in range(shots):
        yield [np.asarray(data[f"s{step}"][shot]) for step in range(num_qubits)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arena", default=f"/dev/shm/noisefs-{os.geteuid()}", help="arena root")
    ap.add_argument("--run", default="legacy", help="run name (results/<run>.npz)")
    ap.add_argument("--qubits", type=int, default=3)
    ap.add_argument("--trajectories", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--safe", action="store_true", help="write .name.tmp, then rename")
    ap.add_argument("--rho", action="store_true", help="save density matrices, not states")
    ap.add_argument("--no-done", action="store_true", help="do not write DONE at the end")
    opts = ap.parse_args()
    inbox = Path(opts.arena) / "inbox" / opts.run
    for i, states in enumerate(trajectories(opts.qubits, opts.trajectories, opts.seed)):
        for step, psi in enumerate(states):
            target = inbox / str(step)
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            arr = np.outer(psi, psi.conj()) if opts.rho else psi
            name = target / f"traj_{i}.npy"
            if opts.safe:
                tmp = target / f".traj_{i}.npy.tmp"
                with open(tmp, "wb") as handle:
                    np.save(handle, arr)
                os.rename(tmp, name)
            else:
                np.save(name, arr)  # the legacy line, unchanged
    if not opts.no_done:
        (inbox / "DONE").touch()
    print(f"wrote {opts.trajectories} trajectories x {opts.qubits} steps into {inbox}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
