"""What a run's snapshot in the arena holds, and how it is folded.

- ``dense``: a (B, 2ⁿ, 2ⁿ) stack, each trajectory's ρ = ψψ†.
- ``factored``: the batch's pure states. Where trajectories repeat (most do at realistic
  noise: :mod:`noisefs.aggregate.distinct`) only the distinct states are stored, each row
  prefixed by its count: a (U, 1 + 2ⁿ) array whose column 0 holds the count (an exact
  integer in the real part). Otherwise the (B, 2ⁿ) stack itself. The widths tell them apart:
  2ⁿ is a power of two, 1 + 2ⁿ is not (n ≥ 1).

A 9-qubit GHZ batch of 16,384 trajectories is then ~300 rows instead of 16,384: the arena
moves, hashes and verifies 50x fewer bytes, and the fold is as many times cheaper.
"""

from __future__ import annotations

import numpy as np

from noisefs.aggregate.distinct import Rows, distinct_rows, gather, stacked
from noisefs.aggregate.sums import Aggregator

__all__ = ["STORES", "encode_snapshot", "fold_snapshot"]

STORES = ("factored", "dense")


def encode_snapshot(states: Rows, store: str) -> np.ndarray:
    """The array stored for one step of a batch of pure states Ψ: a (B × 2ⁿ) stack, or
    the B rows as a list (Aer's per-shot arrays)."""
    if store == "dense":
        states = stacked(states)
        return states[:, :, None] * states.conj()[:, None, :]
    found = distinct_rows(states)
    if found is None:
        return stacked(states)
    keep, counts = found
    counted = np.empty((len(keep), 1 + len(states[0])), dtype=np.complex128)
    counted[:, 0] = counts
    gather(states, keep, out=counted[:, 1:])  # straight from Aer's rows: no stack between
    return counted


def fold_snapshot(aggregator: Aggregator, step: int, snapshot: np.ndarray, store: str) -> None:
    """Fold one stored snapshot (as :func:`encode_snapshot` wrote it) into ``aggregator``."""
    if store == "dense":
        aggregator.fold_densities(step, snapshot)
    elif snapshot.ndim == 2 and snapshot.shape[1] == 1 + 2**aggregator.num_qubits:
        aggregator.fold_states(step, snapshot[:, 1:], counts=snapshot[:, 0].real)
    else:
        aggregator.fold_states(step, snapshot)
