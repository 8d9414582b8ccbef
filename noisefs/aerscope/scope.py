"""``noisefs.managed``: one object that is both a decorator and a context manager.

Which scope a ``backend.run`` call belongs to
---------------------------------------------
* The calling thread's own scopes come first: entering a scope pushes it on a context
  variable, so the innermost scope of that thread (or asyncio task) wins.
* A thread with no scope of its own — a worker thread a library started, e.g. a
  ``ThreadPoolExecutor`` inside the wrapped function, or qiskit-ibm-runtime's local sampler —
  falls back to a process-wide stack: the innermost scope entered by any thread and still open.
  Context variables are not inherited by such threads, so this is the only way to reach them.
* Consequence for unrelated threads: while any scope is open, Aer jobs of *every* thread of the
  process that has no scope of its own are batched into that scope's arena. Their results are
  unchanged (batching is exact, and what cannot be batched exactly is passed through), but
  they use that scope's arena and its quota. Code that must keep Aer untouched while another
  thread holds a scope runs under ``with noisefs.unmanaged():``.
* Outside every scope Aer is untouched: the intercepted ``run`` calls the original at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ContextDecorator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from noisefs.aerscope.options import DEFAULT_BATCH, ManagedOptions, validate_options

if TYPE_CHECKING:
    from qiskit.providers import JobV1

    from noisefs.arena import Arena

_CURRENT: ContextVar[tuple] = ContextVar("noisefs_managed_scopes", default=())
# (managed object, scope) of every entry made in this context, innermost last: how __exit__
# finds the scope its own __enter__ opened (context variables are per asyncio task/thread)
_ENTERED: ContextVar[tuple] = ContextVar("noisefs_managed_entries", default=())
_OPTED_OUT: ContextVar[bool] = ContextVar("noisefs_managed_opted_out", default=False)
_GLOBAL: list = []
_GLOBAL_LOCK = threading.Lock()


def active_scope() -> Scope | None:
    """The scope a ``backend.run`` call made now, in this thread, belongs to (or None)."""
    if _OPTED_OUT.get():
        return None
    for scope in reversed(_CURRENT.get()):
        if scope.is_open:
            return scope
    with _GLOBAL_LOCK:
        for scope in reversed(_GLOBAL):
            if scope.is_open:
                return scope
    return None


@contextlib.contextmanager
def unmanaged() -> Iterator[None]:
    """Within this block the calling thread's Aer jobs are never managed (not even by the
    process-wide fallback of another thread's scope)."""
    token = _OPTED_OUT.set(True)
    try:
        yield
    finally:
        _OPTED_OUT.reset(token)


class Scope:
    """One entry into a :class:`managed` object: its arena, its jobs and their figures."""

    def __init__(self, options: ManagedOptions) -> None:
        self.options = options
        self.is_open = False
        self._arena = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self.batched_jobs = 0
        self.batches = 0
        self.passthroughs: list[str] = []

    # -- lifetime --------------------------------------------------------------------------

    def _enter(self) -> None:
        from noisefs.aerscope.intercept import install

        install()
        self.is_open = True
        _CURRENT.set(_CURRENT.get() + (self,))
        with _GLOBAL_LOCK:
            _GLOBAL.append(self)

    def _exit(self) -> None:
        with _GLOBAL_LOCK:
            if self in _GLOBAL:
                _GLOBAL.remove(self)
        # only this scope leaves the context's stack, wherever it is (exits need not nest)
        _CURRENT.set(tuple(s for s in _CURRENT.get() if s is not self))
        with self._lock:
            self.is_open = False
            while self._inflight:  # jobs of worker threads still running in this scope
                self._idle.wait()
            arena, self._arena = self._arena, None
        if arena is not None:
            arena.close()

    def arena(self) -> Arena:
        """This scope's arena, opened on first use."""
        with self._lock:
            if self._arena is None:
                from noisefs.arena import Arena

                o = self.options
                extra = {} if o.put_timeout is None else {"timeout_s": o.put_timeout}
                self._arena = Arena(
                    root=o.root,
                    quota=o.quota,
                    max_files=o.max_files,
                    spill_dir=o.spill_dir,
                    spill_quota=o.spill_quota,
                    **extra,
                )
            return self._arena

    # -- jobs ------------------------------------------------------------------------------

    def run_job(
        self,
        backend: Any,
        circuits: Any,
        parameter_binds: list | None,
        run_options: dict,
        original_run: Callable,
    ) -> JobV1:
        """Run one intercepted ``backend.run`` call in this scope (a :class:`ManagedJob`); once
        the scope is closed, Aer's own job from ``original_run``, as outside every scope."""
        from noisefs.aerscope.job import run_managed

        with self._lock:
            # A worker thread may have got this scope from active_scope() just before _exit
            # closed it: run as outside every scope, never reopen an arena nobody would close.
            closed = not self.is_open
            if not closed:
                self._inflight += 1
        if closed:
            return original_run(backend, circuits, parameter_binds, **run_options)
        try:
            return run_managed(self, backend, circuits, parameter_binds, run_options, original_run)
        finally:
            with self._lock:
                self._inflight -= 1
                self._idle.notify_all()

    def record_batched(self, batches: int) -> None:
        """Count a batched job of ``batches`` batches."""
        with self._lock:
            self.batched_jobs += 1
            self.batches += batches

    def record_passthrough(self, reason: str) -> None:
        """Remember why a job was passed through."""
        with self._lock:
            self.passthroughs.append(reason)

    def stats(self) -> dict:
        """Jobs batched, batches run, reasons of the jobs passed through, arena figures."""
        with self._lock:
            figures = {
                "batched_jobs": self.batched_jobs,
                "batches": self.batches,
                "passthroughs": list(self.passthroughs),
            }
            if self._arena is not None:
                figures["arena"] = self._arena.stats()
        return figures


class managed(ContextDecorator):  # noqa: N801 - the public name is lower case (SPEC)
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
        scope = Scope(self.options)
        scope._enter()
        _ENTERED.set(_ENTERED.get() + ((self, scope),))
        with self._lock:
            self._open.append(scope)
        return scope

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self._own_scope()._exit()
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
