"""The arenas a daemon holds, by root: what it polices and ingests for."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from noisefs.daemon.held import Held
from noisefs.daemon.reporting import Reporter

log = logging.getLogger("noisefs.daemon")


class Arenas(Mapping[str, Held]):
    """The held arenas by root (``str(cfg.root)``); a released one writes its last status
    (``stopped``) through ``reporter``. Taking one is :func:`~noisefs.daemon.held.hold`."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._held: dict[str, Held] = {}

    def __getitem__(self, root: str) -> Held:
        return self._held[root]

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def add(self, held: Held) -> None:
        """Hold ``held`` from now on."""
        self._held[str(held.cfg.root)] = held

    def release(self, root: str) -> None:
        """Checkpoint the arena's runs and write their averages so far, write its last
        status, close everything it holds (its lock last)."""
        held = self._held.pop(root)
        try:
            held.inbox.shutdown()
            self._reporter.write_status(held, state="stopped")
        finally:
            held.close()

    def release_all(self) -> None:
        """Release every arena, whatever fails for one of them (logged)."""
        for root in list(self._held):
            try:
                self.release(root)
            except Exception:  # noqa: BLE001 - release the others regardless
                log.exception("releasing %s failed", root)
