"""``noisefs.run``: the Python face of ``noisefs run``."""

from __future__ import annotations

import os

from noisefs.errors import InputError
from noisefs.options import make_run
from noisefs.result import Result


def run(
    circuit: str | os.PathLike | object,
    *,
    trajectories: int = 1000,
    seed: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    noise_model: object | None = None,
    **options,
) -> Result:
    """Simulate ``circuit`` under T1/T2 and gate noise; return the averages.

    ``circuit`` is an OpenQASM 2 or 3 file path, OpenQASM text (a string holding a newline
    or starting with ``OPENQASM``) or a ``qiskit.QuantumCircuit``. Options are the CLI's, as
    keyword arguments with underscores: ``t1="50us"``, ``snapshots="every:4"``,
    ``quota="256MiB"``, ``store="dense"``, ``workers=2``, ``keep_qubits=[0, 1]``,
    ``target_tol=0.01``, ``resume=True``, ``scheduler="tcp://host:8786"``, ... The result
    file is written only when ``output`` is given (and ``resume`` needs it, for its
    checkpoint). Trajectory i uses Aer shot seed ``seed + i``: the averages equal Aer's own
    average over ``trajectories`` shots with ``seed_simulator=seed`` to 1e-8.

    ``noise_model`` takes any ``qiskit_aer.noise.NoiseModel`` instead of the noise rule: the
    circuit is translated to the model's basis gates and the model is recorded in the
    result exactly (``noisefs.oracle.aer_reference`` rebuilds it). ``backend`` takes a
    device instead (any ``BackendV2``, or a fake device's name such as ``"FakeTorino"``):
    its noise as ``NoiseModel.from_backend`` builds it, the circuit transpiled to its target
    and simulated on the qubits it uses; results come back in the circuit's own qubit order.

    Progress shows by itself: a widget in a Jupyter notebook (the text bar there without
    ipywidgets), the bar on a terminal, nothing elsewhere; ``quiet=True`` (or
    ``progress=False``) switches it off, ``progress=True`` forces a bar on stderr.
    """
    from noisefs.pipeline.trajectory import TrajectoryRun  # lazy: qiskit loads with the run

    run_options, noise = make_run(
        circuit, trajectories=trajectories, seed=seed, noise_model=noise_model, **options
    )
    if run_options.resume and run_options.output is None:
        raise InputError("resume=True needs output=: the checkpoint lives beside the result file")
    show_progress = False if quiet else progress
    return TrajectoryRun(run_options, noise, show_progress=show_progress).execute()
