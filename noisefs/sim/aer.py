"""The one module that runs Aer for noisefs: a batch of trajectories → per-step states.

A batch is one Aer job run in the calling thread through Aer's own job function
(:func:`noisefs.aer_private.execute_circuits_job`), below ``AerBackend.run``: a managed
scope's interception of ``run`` never re-batches noisefs's own batches, and the per-shot
states come back as Aer's arrays, not wrapped one by one in ``Statevector``s.
:func:`original_run` is Aer's ``run`` unwrapped from any interception, for the managed scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from noisefs.aer_private import execute_circuits_job
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


def simulate(job: SimulationJob, batch: Batch) -> list[Sequence[np.ndarray]]:
    """Run one batch in Aer; per snapshot step, the batch's pure states as Aer returned
    them: ``size`` arrays of length 2ⁿ, not stacked (the arena stores only the distinct
    ones: :func:`noisefs.aggregate.encode_snapshot`)."""
    from qiskit_aer import AerSimulator  # lazy: Aer, not at import

    simulator = AerSimulator(
        method="statevector",
        noise_model=job.noise_model,
        max_parallel_threads=job.aer_threads,
    )
    try:
        # Aer's raw output: each shot's state as Aer's own array, bit for bit what
        # ``run().result()`` wraps in a ``Statevector`` per shot (its formatting costs more
        # than folding the batch), run in this thread, past any interception of ``run``
        output = execute_circuits_job(
            simulator,
            [job.circuit],
            None,
            {"shots": batch.size, "seed_simulator": batch.seed},
            job_id=f"{job.run_name}-{batch.index}",
        )
    except Exception as exc:  # AerError, and RuntimeError or TypeError from Aer's C++ core
        message = one_line(exc) or type(exc).__name__
        raise SimulationError(
            f"Aer could not simulate trajectories {batch.start}-{batch.stop - 1}: {message}"
        ) from None
    results = output.get("results") or [{}]
    if not output.get("success") or not results[0].get("success"):
        status = results[0].get("status") or output.get("status") or "no result"
        raise SimulationError(
            f"Aer failed on trajectories {batch.start}-{batch.stop - 1}: {one_line(status)}"
        )
    data = results[0]["data"]
    per_step = []
    for label in job.labels:
        rows = data[label]
        data[label] = None  # the rows are the caller's now, and go when it drops them
        if len(rows) == 1 and batch.size > 1:
            rows = list(rows) * batch.size  # Aer ran a deterministic circuit once
        elif len(rows) != batch.size:
            raise SimulationError(f"Aer returned {len(rows)} states for {batch.size} shots")
        per_step.append(rows)
    return per_step
