"""The one module that runs Aer for noisefs: a batch of trajectories → per-step states.

It calls Aer's original ``AerBackend.run`` (``__wrapped__`` when ``noisefs.managed`` has
intercepted it), so noisefs's own batches are never re-batched by a managed scope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noisefs.errors import SimulationError, one_line
from noisefs.sim.batches import Batch


@dataclass(frozen=True)
class SimulationJob:
    """Everything a worker needs to simulate any batch; picklable."""

    circuit: object  # QuantumCircuit with pershot save_statevector at each snapshot step
    labels: tuple[str, ...]
    noise_model: object  # qiskit_aer.noise.NoiseModel
    store: str  # "factored" or "dense"
    run_name: str
    aer_threads: int = 0  # 0: let Aer use every core

    def with_threads(self, threads: int) -> SimulationJob:
        return SimulationJob(**{**self.__dict__, "aer_threads": threads})


def original_run():
    """Aer's own ``AerBackend.run``, unwrapped from any interception."""
    from qiskit_aer.backends.aerbackend import AerBackend  # lazy: Aer, not at import

    run = AerBackend.run
    while hasattr(run, "__wrapped__"):
        run = run.__wrapped__
    return run


def simulate(job: SimulationJob, batch: Batch) -> list[np.ndarray]:
    """Run one batch in Aer; return one (size × 2ⁿ) stack of pure states per snapshot step."""
    from qiskit_aer import AerSimulator  # lazy: Aer, not at import

    simulator = AerSimulator(
        method="statevector",
        noise_model=job.noise_model,
        max_parallel_threads=job.aer_threads,
    )
    try:
        aer_job = original_run()(
            simulator, job.circuit, shots=batch.size, seed_simulator=batch.seed
        )
        result = aer_job.result()
    except Exception as exc:  # AerError, and RuntimeError or TypeError from Aer's C++ core
        message = one_line(exc) or type(exc).__name__
        raise SimulationError(
            f"Aer could not simulate trajectories {batch.start}-{batch.stop - 1}: {message}"
        ) from None
    if not result.success:
        raise SimulationError(
            f"Aer failed on trajectories {batch.start}-{batch.stop - 1}: {result.status}"
        )
    data = result.data(0)
    stacks = []
    for label in job.labels:
        states = _stacked(data[label])
        if states.shape[0] == 1 and batch.size > 1:
            # Aer runs a deterministic circuit (no noise, no measurement) once
            states = np.repeat(states, batch.size, axis=0)
        elif states.shape[0] != batch.size:
            raise SimulationError(f"Aer returned {states.shape[0]} states for {batch.size} shots")
        stacks.append(states)
    return stacks


def _stacked(shots: list) -> np.ndarray:
    """One (shots × 2ⁿ) array of the per-shot states Aer returns (``Statevector``s).

    Copied row by row from each state's own array: ``np.stack`` of ``np.asarray`` builds a
    list of arrays first and costs ~3x as much per shot."""
    first = _amplitudes(shots[0])
    out = np.empty((len(shots), first.size), dtype=np.complex128)
    for row, state in zip(out, shots, strict=True):
        row[:] = _amplitudes(state)
    return out


def _amplitudes(state) -> np.ndarray:
    data = getattr(state, "data", None)  # a qiskit Statevector holds its amplitudes there
    return data if isinstance(data, np.ndarray) else np.asarray(state)
