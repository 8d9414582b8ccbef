"""Ctrl-C and SIGTERM deferred to safe points.

A run folds each batch into several running sums (one per snapshot step). An interrupt that
lands between two of those folds would leave a batch half counted, and a checkpoint taken
then would count it again on ``--resume``. Inside :class:`DeferredInterrupts` the signals
whose Python handler would raise (``KeyboardInterrupt``) only set a flag; :meth:`check`,
called where the sums are consistent, then runs the original handler. Signals left at
their default action (a library caller's SIGTERM) are not touched, and nothing is
installed outside the main thread (where Python cannot set handlers).
"""

from __future__ import annotations

import signal
import threading


class DeferredInterrupts:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}
        self._pending: int | None = None

    def __enter__(self) -> DeferredInterrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self._previous[signum] = handler
                    signal.signal(signum, self._defer)
        return self

    def _defer(self, signum: int, frame) -> None:
        if self._pending is None:
            self._pending = signum

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def check(self) -> None:
        """At a safe point: act on a deferred signal (normally raises KeyboardInterrupt)."""
        signum, self._pending = self._pending, None
        if signum is not None:
            self._previous[signum](signum, None)

    def discard(self) -> bool:
        """Forget a deferred signal (the work it would have stopped is done); True if one was."""
        signum, self._pending = self._pending, None
        return signum is not None

    def __exit__(self, *exc) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signum, self._pending = self._pending, None
        if exc[0] is None and signum is not None:
            previous[signum](signum, None)
