"""``noisefs.run``: the Python face of ``noisefs run``."""

from __future__ import annotations

import os

from noisefs.result import Result

_NOISE_OPTIONS = ("t1", "t2", "time_1q", "time_2q", "p1", "p2", "readout", "calibration")


def run(
    circuit: str | os.PathLike,
    *,
    trajectories: int = 1000,
    seed: int | None = None,
    progress: bool = False,
    **options,
) -> Result:
    """Simulate ``circuit`` (OpenQASM 2 or 3 file) under T1/T2 and gate noise; return the averages.

    Options are the CLI's, as keyword arguments with underscores: ``t1="50us"``,
    ``snapshots="every:4"``, ``quota="256MiB"``, ``store="dense"``, ``workers=2``,
    ``keep_qubits=[0, 1]``, ``target_tol=0.01``, ``resume=True``, ... The result file is
    written only when ``output`` is given (and ``resume`` needs it, for its checkpoint).
    Trajectory i uses Aer shot seed ``seed + i``: the averages equal Aer's own average over
    ``trajectories`` shots with ``seed_simulator=seed`` to 1e-8.
    """
    from noisefs.errors import InputError
    from noisefs.options import make_options
    from noisefs.pipeline.trajectory import TrajectoryRun
    from noisefs.sim.noise import noise_params

    noise = noise_params(**{name: options.pop(name) for name in _NOISE_OPTIONS if name in options})
    run_options = make_options(circuit, trajectories=trajectories, seed=seed, **options)
    if run_options.resume and run_options.output is None:
        raise InputError("resume=True needs output=: the checkpoint lives beside the result file")
    return TrajectoryRun(run_options, noise, show_progress=progress).execute()
