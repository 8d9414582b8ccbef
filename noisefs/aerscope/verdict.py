"""What a job's options decide before anything runs (:func:`static_verdict`: batched or passed
through, never refused), and the values Aer itself reads for them: :func:`effective_option`
(which of the run's and the backend's options Aer uses) and :func:`aer_int` (Aer's own check
and cast of an integer option), so that a shot count or a seed means here what it means to
Aer, and one Aer rejects is left to Aer to reject."""

from __future__ import annotations

from typing import Any

from qiskit_aer.backends.controller_wrappers import AerConfig

from noisefs.aer_private import validate_option

# Options whose presence (truthy, or an object) passes the job through whole.
PASSTHROUGH_OPTIONS = {
    "shot_branching_enable": (
        "shot_branching_enable=True: Aer branches shots at measurements instead of seeding "
        "them one by one, so batches would not add up to the job; Aer runs it whole"
    ),
    "batched_shots_gpu": "batched_shots_gpu needs many shots per call (Aer batches on the GPU)",
    "executor": "a custom executor: Aer splits and submits the job itself",
    "max_job_size": "max_job_size: Aer splits and submits the job itself",
    "max_shot_size": "max_shot_size: Aer splits the shots itself",
}
# Methods whose shots are trajectories seeded shot by shot; every other method is passed
# through (density_matrix, superop and unitary sample measurements from one evolution).
BATCHED_METHODS = ("statevector", "automatic")
# Aer counts a circuit's shots in a C int: past this it runs no shot (2^32) or fails (2^31+5),
# so such a job is left to Aer rather than run as 2^31 shots in batches.
AER_MAX_SHOTS = 2**31 - 1


def effective_option(backend: Any, run_options: dict, name: str, default: Any = None) -> Any:
    """The value Aer uses (``generate_aer_config``: ``None`` means unset): the run option,
    else the backend's option, else ``default``."""
    value = run_options.get(name)
    if value is None:
        value = getattr(backend.options, name, None)
    return default if value is None else value


def aer_int(name: str, value: object) -> int:
    """``value`` as Aer's configuration holds the integer option ``name``: Aer's own check and
    cast (``_validate_option``: an integer as it is, anything else through ``int()``, with
    Aer's DeprecationWarning), then its C++ setter's range (``shots``: 0 to 2^64-1,
    ``seed_simulator``: a signed 64-bit integer). Raises what Aer raises (``TypeError``)."""
    config = AerConfig()
    setattr(config, name, validate_option(name, value))
    return int(getattr(config, name))


def job_shots(backend: Any, run_options: dict) -> int:
    """The job's shot count as Aer reads it (Aer's default when neither the run nor the
    backend sets one); raises what Aer raises for a value it rejects."""
    shots = effective_option(backend, run_options, "shots")
    if shots is None:
        return int(AerConfig().shots)
    return aer_int("shots", shots)


def _is_set(value: object) -> bool:
    try:
        return bool(value)
    except Exception:  # noqa: BLE001 - an object without a truth value: set, Aer decides
        return True


def static_verdict(backend: Any, run_options: dict) -> str | None:
    """A reason to pass the job through whole, known before anything runs, or None."""
    for name, reason in PASSTHROUGH_OPTIONS.items():
        if _is_set(effective_option(backend, run_options, name)):
            return reason
    method = effective_option(backend, run_options, "method", "automatic")
    if not (isinstance(method, str) and method in BATCHED_METHODS):
        return f"method {method!r}: only statevector trajectories are batched"
    device = effective_option(backend, run_options, "device", "CPU")
    if not (isinstance(device, str) and device == "CPU"):
        return f"device {device!r}: only CPU runs are batched"
    return None
