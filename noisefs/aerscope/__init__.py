"""``noisefs.managed``: every Aer job of the user's own code, batched, bounded and exact.

Public: :class:`managed` (decorator and context manager), :func:`unmanaged`,
:class:`ManagedJob`, :class:`ManagedError`, :class:`UnbatchableJob`. See ``docs/managed.md``
for what is batched, passed through or refused, and why. Modules: ``scope`` (the object and
the scope stacks), ``intercept`` (the patch), ``batching`` (plan and save rewriting),
``job`` (running one call), ``merge`` (merging results), ``states`` (the arena flow).
"""

from __future__ import annotations

import sys
import types

from noisefs.managed.errors import ManagedError, UnbatchableJob
from noisefs.managed.scope import Scope, active_scope, managed, unmanaged

__all__ = [
    "ManagedError",
    "ManagedJob",
    "Scope",
    "UnbatchableJob",
    "active_scope",
    "managed",
    "unmanaged",
]


def __getattr__(name: str):
    if name == "ManagedJob":  # imports qiskit: only on demand
        from noisefs.managed.job import ManagedJob

        return ManagedJob
    raise AttributeError(f"module 'noisefs.managed' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Importing ``noisefs.managed`` binds the *module* to ``noisefs.managed``; calling it
    must still build the object, so ``noisefs.managed(...)`` works whatever ran first."""

    def __call__(self, *args, **kwargs) -> managed:
        return managed(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
