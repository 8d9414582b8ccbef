"""Options of a run: one frozen dataclass, validated once, shared by the CLI and the API."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from noisefs.errors import InputError
from noisefs.units import parse_duration, parse_size

STORES = ("factored", "dense")
DEFAULT_TRAJECTORIES = 1000
DEFAULT_MAX_DM_QUBITS = 12
DEFAULT_SEED_TRANSPILER = 1234


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run. Units are in the names; sizes in bytes, times in seconds."""

    circuit: Path
    trajectories: int = DEFAULT_TRAJECTORIES
    seed: int | None = None
    snapshots: str = "barriers"
    output: Path | None = None
    arena_root: Path | None = None
    quota_bytes: int | None = None
    max_files: int | None = None
    spill_dir: Path | None = None
    spill_quota_bytes: int | None = None
    batch: int | None = None
    workers: int = 1
    store: str = "factored"
    scheduler: str | None = None
    resume: bool = False
    optimize: int = 0
    seed_transpiler: int = DEFAULT_SEED_TRANSPILER
    max_dm_qubits: int = DEFAULT_MAX_DM_QUBITS
    keep_qubits: tuple[int, ...] | None = None
    target_tol: float | None = None
    put_timeout_s: float = 120.0
    checkpoint_interval_s: float = 5.0

    def replace(self, **changes) -> RunOptions:
        return dataclasses.replace(self, **changes)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool):
        raise InputError(f"--{name} must be an integer, not {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InputError(f"--{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise InputError(f"--{name} must be at least {minimum}, not {number}")
    return number


def _path(name: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{name} must be a file or directory path, not {value!r}")
    return Path(value)


def parse_keep_qubits(text: str | tuple | list | None) -> tuple[int, ...] | None:
    """``"0,2,3"`` or a sequence of ints → sorted unique tuple."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        text = [text]
    try:
        items = text.split(",") if isinstance(text, str) else list(text)
        values = [int(str(item).strip()) for item in items if str(item).strip()]
    except (TypeError, ValueError):
        raise InputError(
            f"--keep-qubits takes comma-separated qubit indices, not {text!r}"
        ) from None
    if len(set(values)) != len(values):
        raise InputError(f"--keep-qubits names a qubit twice: {text!r}")
    # the reduced state keeps Qiskit's order: the lowest kept qubit is least significant
    qubits = sorted(values)
    if not qubits or qubits[0] < 0:
        raise InputError(f"--keep-qubits takes non-negative qubit indices, not {text!r}")
    return tuple(qubits)


def make_options(circuit: str | os.PathLike, **kwargs) -> RunOptions:
    """Validate user-facing option values (human units allowed) into :class:`RunOptions`.

    Noise options are handled separately by :func:`noisefs.sim.noise.noise_params`.
    Unknown names are rejected by name.
    """
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    aliases = {
        "quota": "quota_bytes",
        "arena": "arena_root",
        "spill": "spill_dir",
        "spill_quota": "spill_quota_bytes",
        "checkpoint_interval": "checkpoint_interval_s",
        "put_timeout": "put_timeout_s",
    }
    values: dict = {}
    for name, value in kwargs.items():
        name = aliases.get(name, name)
        if name not in fields:
            raise InputError(f"unknown run option {name!r}")
        if value is not None:
            values[name] = value
    out: dict = {"circuit": _path("circuit", circuit)}
    if "trajectories" in values:
        out["trajectories"] = _positive_int("trajectories", values.pop("trajectories"))
    if "seed" in values:
        seed = _positive_int("seed", values.pop("seed"), minimum=0)
        if seed >= 2**63:
            raise InputError(f"--seed must be below 2**63, not {seed}")
        out["seed"] = seed
    for name in ("batch", "workers", "max_files"):
        if name in values:
            out[name] = _positive_int(name.replace("_", "-"), values.pop(name))
    if "optimize" in values:
        level = _positive_int("optimize", values.pop("optimize"), minimum=0)
        if level > 3:
            raise InputError(f"--optimize takes 0, 1, 2 or 3, not {level}")
        out["optimize"] = level
    if "max_dm_qubits" in values:
        out["max_dm_qubits"] = _positive_int(
            "max-dm-qubits", values.pop("max_dm_qubits"), minimum=0
        )
    for name in ("quota_bytes", "spill_quota_bytes"):
        if name in values:
            out[name] = parse_size(values.pop(name))
    if "store" in values:
        store = str(values.pop("store"))
        if store not in STORES:
            raise InputError(f"--store takes 'factored' or 'dense', not {store!r}")
        out["store"] = store
    if "keep_qubits" in values:
        out["keep_qubits"] = parse_keep_qubits(values.pop("keep_qubits"))
    if "target_tol" in values:
        try:
            tol = float(values.pop("target_tol"))
        except ValueError:
            raise InputError("--target-tol takes a positive number") from None
        if not tol > 0:
            raise InputError(f"--target-tol must be positive, not {tol}")
        out["target_tol"] = tol
    if "checkpoint_interval_s" in values:
        out["checkpoint_interval_s"] = parse_duration(values.pop("checkpoint_interval_s"))
    if "put_timeout_s" in values:
        out["put_timeout_s"] = parse_duration(values.pop("put_timeout_s"))
    for name in ("output", "arena_root", "spill_dir"):
        if name in values:
            out[name] = _path(name, values.pop(name)).expanduser()
    if "snapshots" in values:
        out["snapshots"] = str(values.pop("snapshots"))
    if "scheduler" in values:
        out["scheduler"] = _scheduler(str(values.pop("scheduler")))
    out.update(values)
    return RunOptions(**out)


def _scheduler(address: str) -> str:
    """``--scheduler``: refused with a clear message while Dask execution is not built."""
    import importlib.util

    if importlib.util.find_spec("noisefs.distributed") is None:
        raise InputError(
            f"--scheduler {address}: running on a Dask cluster is not available in this version "
            "of noisefs; use --workers N for local processes"
        )
    return address


def default_output(circuit: Path) -> Path:
    """``<circuit stem>.noisefs.npz`` beside the circuit."""
    return circuit.with_name(f"{circuit.stem}.noisefs.npz")
