"""``noisefs.managed``: one object that is both a decorator and a context manager.

Each entry opens its own :class:`~noisefs.aerscope.registry.Scope` (which scope a job
belongs to, and the threads' rules: :mod:`noisefs.aerscope.registry`); the first entry
installs the patch on ``AerBackend.run`` (:mod:`noisefs.aerscope.intercept`).
"""

from __future__ import annotations

import os
import threading
from contextlib import ContextDecorator
from contextvars import ContextVar

from noisefs.aerscope.options import DEFAULT_BATCH, validate_options
from noisefs.aerscope.registry import Scope, active_scope, unmanaged

__all__ = ["Scope", "active_scope", "managed", "unmanaged"]

# (managed object, scope) of every entry made in this context, innermost last: how __exit__
# finds the scope its own __enter__ opened (context variables are per asyncio task/thread)
_ENTERED: ContextVar[tuple[tuple[managed, Scope], ...]] = ContextVar(
    "noisefs_managed_entries", default=()
)


class managed(ContextDecorator):  # noqa: N801 - the public name is lower case (docs/contract.md)
    """Batch every Aer backend ``run`` inside a function or a ``with`` block.

    ``@noisefs.managed(quota="256MiB", batch=256)`` or ``with noisefs.managed(...) as scope:``.
    Jobs run in batches of at most ``batch`` shots with ``seed_simulator = base + offset``, so
    counts, memory and averages equal the unbatched job's; per-shot state saves and
    ``save_density_matrix`` flow through an arena (``root``, ``quota``, ``max_files``,
    ``spill_dir``, ``spill_quota``; ``put_timeout`` is its ``timeout_s``: as
    :class:`noisefs.Arena`) and come back averaged. A job of several batches shows their
    progress (a widget in a notebook, a bar on a terminal) unless ``quiet``. See
    ``docs/managed.md``.

    The same object may be entered again (nested, recursively, from several threads): each
    entry is its own :class:`Scope`, the innermost one wins, and each exit closes the scope of
    its own entry (exits need not nest: two asyncio tasks may leave in any order).
    """

    def __init__(
        self,
        quota: str | int | None = None,
        max_files: int | None = None,
        spill_dir: str | os.PathLike | None = None,
        batch: int = DEFAULT_BATCH,
        root: str | os.PathLike | None = None,
        spill_quota: str | int | None = None,
        put_timeout: str | float | None = None,
        quiet: bool = False,
    ) -> None:
        self.options = validate_options(
            quota=quota,
            max_files=max_files,
            spill_dir=spill_dir,
            batch=batch,
            root=root,
            spill_quota=spill_quota,
            put_timeout=put_timeout,
            quiet=quiet,
        )
        self._lock = threading.Lock()
        self._open: list[Scope] = []  # every scope of this object entered and not exited

    def __enter__(self) -> Scope:
        # lazy: intercept imports the job runner and with it qiskit and qiskit_aer (about a
        # second); `import noisefs` and building a managed object stay light. No cycle:
        # intercept imports the registry, never this module.
        from noisefs.aerscope.intercept import install

        install()
        scope = Scope(self.options)
        scope.open()
        _ENTERED.set(_ENTERED.get() + ((self, scope),))
        with self._lock:
            self._open.append(scope)
        return scope

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self._own_scope().close()
        return False  # exceptions propagate unchanged

    def _own_scope(self) -> Scope:
        """The scope this context's innermost entry into this object opened, removed from
        this context's entries: exits in another order than the entries (two asyncio tasks,
        two threads) each close their own scope."""
        entries = _ENTERED.get()
        for i in range(len(entries) - 1, -1, -1):
            owner, scope = entries[i]
            if owner is self and scope.is_open:
                break
        else:  # exited from a context that did not enter it: the latest entry still open
            with self._lock:
                scope = self._open.pop()
            return scope
        _ENTERED.set(entries[:i] + entries[i + 1 :])
        with self._lock:
            self._open.remove(scope)
        return scope

    def __repr__(self) -> str:
        o = self.options
        return f"managed(quota={o.quota!r}, max_files={o.max_files!r}, batch={o.batch!r})"
