"""The one patch: ``qiskit_aer.backends.aerbackend.AerBackend.run``, installed once.

Every Aer backend (``AerSimulator``, ``AerSimulator.from_backend``, and so Aer's
``EstimatorV2``/``SamplerV2`` and qiskit's ``BackendSamplerV2``/``BackendEstimatorV2`` over
it) runs through ``AerBackend.run``. The replacement is ``functools.wraps(replaced)``, so
``AerBackend.run.__wrapped__`` is the run it replaced (Aer's own, or another library's
wrapper around it). :func:`original_run` (one definition, in :mod:`noisefs.sim.aer`,
re-exported here) is Aer's own run: it unwraps every ``__wrapped__`` level to bypass
interception, also under another library's ``functools.wraps`` wrapper on top of this one.
Outside every managed scope the replacement calls the replaced run at once, with the
caller's arguments unchanged.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from qiskit.providers import JobV1
from qiskit_aer.backends.aerbackend import AerBackend

from noisefs.aerscope.job import run_managed
from noisefs.aerscope.registry import Scope, active_scope
from noisefs.sim.aer import original_run

__all__ = ["install", "installed", "original_run", "run_in_scope"]

_LOCK = threading.Lock()
_MARK = "_noisefs_managed"


def install() -> None:
    """Patch ``AerBackend.run`` (idempotent, thread-safe)."""
    with _LOCK:
        current = AerBackend.run
        if getattr(current, _MARK, False):
            return
        replaced = current

        @functools.wraps(replaced)
        def run(self, circuits, parameter_binds=None, **run_options):
            scope = active_scope()
            if scope is None:
                return replaced(self, circuits, parameter_binds, **run_options)
            return run_in_scope(scope, self, circuits, parameter_binds, run_options, replaced)

        setattr(run, _MARK, True)
        AerBackend.run = run


def installed() -> bool:
    """Whether ``AerBackend.run`` is intercepted (it stays so once installed)."""
    return bool(getattr(AerBackend.run, _MARK, False))


def run_in_scope(
    scope: Scope,
    backend: AerBackend,
    circuits: Any,
    parameter_binds: Any,
    run_options: dict,
    replaced_run: Callable,
) -> JobV1:
    """Run one intercepted ``backend.run`` call in ``scope`` (a
    :class:`~noisefs.aerscope.job.ManagedJob`); once the scope is closed, the job of
    ``replaced_run`` (the run the interception replaced), as outside every scope."""
    if not scope.begin_job():
        return replaced_run(backend, circuits, parameter_binds, **run_options)
    try:
        return run_managed(scope, backend, circuits, parameter_binds, run_options, replaced_run)
    finally:
        scope.end_job()
