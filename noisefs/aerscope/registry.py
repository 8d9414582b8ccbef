"""The managed scopes' state: each :class:`Scope` (one entry into a ``managed`` object) and the
registry of open scopes that :func:`active_scope` reads.

Both the patch (:mod:`noisefs.aerscope.intercept`) and the ``managed`` object
(:mod:`noisefs.aerscope.scope`) import this module; it imports neither, nor the job runner.

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
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from noisefs.aerscope.options import ManagedOptions

if TYPE_CHECKING:  # for annotations only
    from noisefs.arena import Arena

_CURRENT: ContextVar[tuple[Scope, ...]] = ContextVar("noisefs_managed_scopes", default=())
_OPTED_OUT: ContextVar[bool] = ContextVar("noisefs_managed_opted_out", default=False)
_GLOBAL: list[Scope] = []
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
    """One entry into a ``managed`` object: its arena, its jobs and their figures."""

    def __init__(self, options: ManagedOptions) -> None:
        self.options = options
        self.is_open = False
        self._arena: Arena | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self.batched_jobs = 0
        self.batches = 0
        self.passthroughs: list[str] = []

    # -- lifetime --------------------------------------------------------------------------

    def open(self) -> None:
        """Register this scope as the calling context's innermost (and the process's)."""
        self.is_open = True
        _CURRENT.set(_CURRENT.get() + (self,))
        with _GLOBAL_LOCK:
            _GLOBAL.append(self)

    def close(self) -> None:
        """Unregister; wait for the jobs still running in this scope; close the arena."""
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
                # lazy: the arena imports numpy (~0.2 s), and most jobs never need it
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

    def begin_job(self) -> bool:
        """Count a job as running in this scope; False (nothing counted) once it is closed: a
        worker thread may have got this scope from :func:`active_scope` just before
        :meth:`close`, and must then run as outside every scope, never reopen an arena that
        nobody would close."""
        with self._lock:
            if not self.is_open:
                return False
            self._inflight += 1
            return True

    def end_job(self) -> None:
        """The end of a job :meth:`begin_job` counted."""
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
            figures: dict = {
                "batched_jobs": self.batched_jobs,
                "batches": self.batches,
                "passthroughs": list(self.passthroughs),
            }
            if self._arena is not None:
                figures["arena"] = self._arena.stats()
        return figures
