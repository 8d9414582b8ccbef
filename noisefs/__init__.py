"""noisefs: bounded /dev/shm snapshot arena and streaming aggregator for noisy Aer trajectories.

Public surface (everything else is private)::

    noisefs.Arena        the quota- and inode-bounded snapshot store
    noisefs.run          simulate a circuit (file, OpenQASM text or QuantumCircuit)
    noisefs.managed      batch, bound and average every Aer job of a block or function
    noisefs.unmanaged    a block whose Aer jobs stay untouched inside a managed scope
    noisefs.Result       the data of a result file
    noisefs.NoiseFSError and its subclasses (each maps to one CLI exit code)
"""

from __future__ import annotations

import importlib

from noisefs.errors import (
    ArenaBusy,
    ArenaError,
    ArenaFull,
    CircuitError,
    CorruptSnapshot,
    InputError,
    NoiseFSError,
    NoiseParameterError,
    OutputError,
    SimulationError,
    TooLargeError,
    UnsafePathError,
    WorkerDied,
)

__version__ = "0.1.0"

__all__ = [
    "Arena",
    "ArenaBusy",
    "ArenaError",
    "ArenaFull",
    "CircuitError",
    "CorruptSnapshot",
    "InputError",
    "ManagedError",
    "NoiseFSError",
    "NoiseParameterError",
    "OutputError",
    "Result",
    "SimulationError",
    "TooLargeError",
    "UnbatchableJob",
    "UnsafePathError",
    "WorkerDied",
    "__version__",
    "managed",
    "run",
    "unmanaged",
]

# Heavy modules (qiskit, qiskit-aer) load on first use, so `import noisefs` and
# `noisefs status` stay fast.
_LAZY = {
    "Arena": ("noisefs.arena", "Arena"),
    "run": ("noisefs.api", "run"),
    "managed": ("noisefs.aerscope", "managed"),
    "unmanaged": ("noisefs.aerscope", "unmanaged"),
    "ManagedError": ("noisefs.aerscope.errors", "ManagedError"),
    "UnbatchableJob": ("noisefs.aerscope.errors", "UnbatchableJob"),
    "Result": ("noisefs.result", "Result"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noisefs' has no attribute {name!r}")
