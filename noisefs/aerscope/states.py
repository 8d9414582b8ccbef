"""Per-shot states of a managed job: through the arena batch by batch, folded into averages.

Each batch's per-shot ψ (or ρ) of one label is stacked, put into the arena in chunks that fit
its quota, read back, folded into that label's :class:`~noisefs.aggregate.Aggregator` with one
ZHERK per chunk, and released at once: the arena never holds more than a batch of one label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from noisefs.aggregate import Aggregator
from noisefs.arena import Arena
from noisefs.pipeline.metadata import ArenaSampler

# a chunk takes at most this share of the quota, so a put never waits on itself
_QUOTA_SHARE = 4


class StateFolder:
    """Averaged ρ of every (experiment, label, memory key) of one managed job."""

    def __init__(self, arena_factory: Callable[[], Arena], run_name: str) -> None:
        self._arena_factory = arena_factory  # the scope's arena opens on the first state
        self._arena: Arena | None = None
        self._sampler: ArenaSampler | None = None  # the job's arena figures, as a run's
        self._run = run_name
        self._aggs: dict[tuple[int, str, str | None], Aggregator] = {}
        self._steps: dict[tuple[int, str], int] = {}
        self.snapshots = 0  # arrays that went through the arena
        self.bytes = 0

    def _step(self, experiment: int, label: str) -> int:
        return self._steps.setdefault((experiment, label), len(self._steps))

    def fold(
        self,
        experiment: int,
        label: str,
        key: str | None,
        values: list,
        kind: str,
        keep: tuple[int, ...] | None,
        batch_index: int,
    ) -> None:
        """Fold a batch's per-shot states (``kind`` ``state``: ψ; ``density``: ρ) of one label."""
        if not values:
            return
        stack = np.stack([np.asarray(v, dtype=np.complex128) for v in values])
        values.clear()  # the batch's copies go as soon as the stack holds them
        num_qubits = int(stack.shape[1]).bit_length() - 1  # ψ: (B, 2ⁿ); ρ: (B, 2ⁿ, 2ⁿ)
        if self._arena is None:
            self._open()
        agg = self._aggs.get((experiment, label, key))
        if agg is None:
            density = "reduced" if keep is not None else "full"
            agg = Aggregator(num_qubits, 1, density=density, keep=keep)
            self._aggs[(experiment, label, key)] = agg
        step = self._step(experiment, label)
        rows = self._rows_per_chunk(stack[0].nbytes)
        for start in range(0, stack.shape[0], rows):
            chunk = stack[start : start + rows]
            arena_key = self._arena.put(chunk, run=self._run, step=step, batch=batch_index)
            try:
                view = self._arena.get(arena_key)
                if kind == "state":
                    agg.fold_states(0, view)
                else:
                    agg.fold_densities(0, view)
                del view
            finally:
                self._arena.release(arena_key)
            self.snapshots += 1
            self.bytes += chunk.nbytes

    def _open(self) -> None:
        self._arena = self._arena_factory()
        # figures from here on: this job's peaks, not the arena's whole history
        self._sampler = ArenaSampler(self._arena.stats())

    def sample(self, force: bool = False) -> None:
        """Take the arena's figures for the job's note: at most every
        ``ArenaSampler.MIN_INTERVAL_S`` (``stats()`` is a ledger commit; after every batch it
        would cost one per batch), or now with ``force`` (the job's last)."""
        if self._sampler is not None:
            self._sampler.sample(self._arena, force=force)

    def note(self) -> dict | None:
        """The job's arena figures (None when no per-shot state needed the arena): the
        sampler's (root, quota, peaks, spilled) and the snapshots that went through it."""
        if self._arena is None or self._sampler is None:
            return None
        figures = self._sampler.meta(str(self._arena.root))
        return {**figures, "snapshots": self.snapshots, "snapshot_bytes": self.bytes}

    def _rows_per_chunk(self, row_bytes: int) -> int:
        quota = int(getattr(self._arena, "quota_bytes", 0) or 0)
        if quota <= 0:
            return 1 << 30
        return max(1, quota // _QUOTA_SHARE // max(1, row_bytes))

    def take(self, experiment: int, label: str, key: str | None) -> np.ndarray | None:
        """The averaged ρ of (experiment, label, key), or None when no shot saved it; made
        in its running sum's own memory (each result is taken once: no sum is kept beside
        the ρ it became)."""
        agg = self._aggs.pop((experiment, label, key), None)
        if agg is None or agg.count[0] == 0:
            return None
        return agg.take_rho(0)

    def keys(self, experiment: int, label: str) -> list[str | None]:
        """Memory keys seen for (experiment, label), in first-seen order."""
        return [k for (e, lab, k) in self._aggs if e == experiment and lab == label]
