"""What a job's options decide before anything runs: batched, passed through or refused
(:func:`static_verdict`); the value Aer would use for an option; the job's shot count."""

from __future__ import annotations

from typing import Any

from noisefs.aerscope.errors import UnbatchableJob

# Options whose presence (truthy) decides the job's fate before anything runs.
REFUSED_OPTIONS = {
    "shot_branching_enable": (
        "shot_branching_enable=True branches shots at measurements, so per-shot saves and their "
        "averages stop being per-trajectory (measured <Z> 0.0 vs 0.786); drop the option or run "
        "the job outside noisefs.managed"
    ),
}
PASSTHROUGH_OPTIONS = {
    "batched_shots_gpu": "batched_shots_gpu needs many shots per call (Aer batches on the GPU)",
    "executor": "a custom executor: Aer splits and submits the job itself",
    "max_job_size": "max_job_size: Aer splits and submits the job itself",
    "max_shot_size": "max_shot_size: Aer splits the shots itself",
}
# Methods whose shots are trajectories seeded shot by shot; every other method is passed
# through (density_matrix, superop and unitary sample measurements from one evolution).
BATCHED_METHODS = ("statevector", "automatic")


def effective_option(backend: Any, run_options: dict, name: str, default: Any = None) -> Any:
    """The value Aer would use: the run option, else the backend's option, else ``default``."""
    if name in run_options:
        return run_options[name]
    return getattr(backend.options, name, default)


def total_shots(backend: Any, run_options: dict) -> int:
    """The job's shot count as an int (Aer accepts ``100.0``); raise for anything else."""
    shots = effective_option(backend, run_options, "shots", 1024)
    if shots is None:
        shots = 1024
    if isinstance(shots, bool):
        raise UnbatchableJob(f"shots must be a whole number, not {shots!r}")
    if isinstance(shots, float) and shots.is_integer():
        shots = int(shots)
    try:
        value = int(shots)
    except (TypeError, ValueError):
        raise UnbatchableJob(f"shots must be a whole number, not {shots!r}") from None
    if value != shots or value < 1:
        raise UnbatchableJob(f"shots must be a whole number >= 1, not {shots!r}")
    return value


def static_verdict(backend: Any, run_options: dict) -> str | None:
    """A reason to pass the job through unbatched, known before anything runs, or None.

    Raises :class:`UnbatchableJob` for an option that is refused outright."""
    for name, reason in REFUSED_OPTIONS.items():
        if effective_option(backend, run_options, name, False):
            raise UnbatchableJob(reason)
    for name, reason in PASSTHROUGH_OPTIONS.items():
        if effective_option(backend, run_options, name, None):
            return reason
    method = effective_option(backend, run_options, "method", "automatic") or "automatic"
    if method not in BATCHED_METHODS:
        return f"method {method!r}: only statevector trajectories are batched"
    device = effective_option(backend, run_options, "device", "CPU") or "CPU"
    if str(device).upper() != "CPU":
        return f"device {device!r}: only CPU runs are batched"
    return None
