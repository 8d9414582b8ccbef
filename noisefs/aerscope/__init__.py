"""``noisefs.managed`` (this package): every Aer job of the user's own code, batched, bounded and exact.

Public: :class:`managed` (decorator and context manager), :func:`unmanaged`,
:class:`ManagedJob`, :class:`ManagedError`, :class:`UnbatchableJob`. See ``docs/managed.md``
for what is batched or passed through, and why. Modules: ``scope`` (the ``managed`` object),
``registry`` (each entry's :class:`Scope` and the open scopes a job finds), ``intercept`` (the
patch), ``verdict`` (what a job's options decide, values as Aer reads them), ``rewrite``
(saves made per-shot), ``aer_rules`` (Aer's truncation and automatic-method rules), ``plan``
(seeds, experiments, batches), ``job`` (running one call), ``merge`` (merging results),
``states`` (the arena flow). Imports go one way: ``scope`` -> ``intercept`` -> ``job`` ->
the rest; ``registry`` and ``options`` import none of them.
"""

from __future__ import annotations

from noisefs.aerscope.errors import ManagedError, UnbatchableJob
from noisefs.aerscope.scope import Scope, active_scope, managed, unmanaged

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
    if name == "ManagedJob":
        # lazy: the job module imports qiskit (about a second)
        from noisefs.aerscope.job import ManagedJob

        return ManagedJob
    raise AttributeError(f"module 'noisefs.aerscope' has no attribute {name!r}")
