"""The distinct states of a batch, with their multiplicities.

At realistic noise most trajectories take the same branches (no error, or the same
no-jump Kraus path), and Aer computes them with the same operations in the same order, so
their states are equal to the last bit: 111 distinct states among 4,000 trajectories of a
9-qubit GHZ circuit, 1,158 of 4,000 for a 7-qubit QFT. Folding each distinct state once with
its count, Σ_b ψ_b ψ_b† = Σ_u c_u ψ_u ψ_u†, makes the fold's ZHERK as many times cheaper.

Rows are grouped by a fingerprint (their product with a fixed pseudo-random vector) and
every row put in a group is compared with the group's first row byte for byte, so a
fingerprint collision can never merge two different states: such a row stays on its own.

The rows may be Aer's own per-shot arrays, a list: then no stack of all B rows is built,
only of the distinct ones. A fresh stack of a large batch costs more than the rest of
the work here (page faults on new memory: 0.24 s for 10,838 rows of a 9-qubit batch).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DistinctStates", "distinct_rows", "distinct_states", "gather", "stacked"]

# Above this share of distinct rows the batch is folded as it is: the copy of the distinct
# rows then saves little (a 10-qubit QFT has ~73 % distinct, a 12-qubit one ~86 %).
WORTH_IT = 0.9

Rows = np.ndarray | Sequence[np.ndarray]  # a (B × d) stack, or B arrays of length d


@dataclass(frozen=True)
class DistinctStates:
    """``states[u]`` occurred ``counts[u]`` times in the batch (first occurrences, in order)."""

    states: np.ndarray
    counts: np.ndarray  # float64, summing to the batch's row count


@functools.cache
def _probe(dim: int) -> np.ndarray:
    rng = np.random.default_rng(0x6E6F697365)
    return rng.standard_normal(dim) + 1j * rng.standard_normal(dim)


def stacked(rows: Rows) -> np.ndarray:
    """``rows`` as one complex (B × d) array (a stack already is returned as it is)."""
    if isinstance(rows, np.ndarray):
        return rows.astype(np.complex128, copy=False)
    return np.stack(rows).astype(np.complex128, copy=False)


def _fingerprints(rows: Rows) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows @ _probe(rows.shape[1])
    probe = _probe(len(rows[0]))
    return np.fromiter((row.dot(probe) for row in rows), np.complex128, count=len(rows))


def distinct_rows(rows: Rows) -> tuple[np.ndarray, np.ndarray] | None:
    """The indices of the distinct rows of ``rows`` (first occurrences, in order; then
    the rows whose fingerprint matched a different state) and their counts (float64), or
    ``None`` when nearly all rows are distinct (``WORTH_IT``): folding them as they are
    is then the cheaper way."""
    count = len(rows)
    if count < 2:
        return None
    _, first, group, counts = np.unique(
        _fingerprints(rows), return_index=True, return_inverse=True, return_counts=True
    )
    if len(first) > WORTH_IT * count:
        return None
    group = group.ravel()
    counts = counts.astype(np.float64)
    duplicates = np.flatnonzero(first[group] != np.arange(count))
    # the first row's bytes of each group with duplicates (a group of one needs no copy)
    reference = {g: rows[first[g]].tobytes() for g in np.unique(group[duplicates]).tolist()}
    alone: list[int] = []  # rows whose fingerprint matched a different state
    for row in duplicates:
        if rows[row].tobytes() != reference[group[row]]:
            alone.append(int(row))
            counts[group[row]] -= 1
    # first occurrences in the batch's order, so the fold's order is the rows' own
    by_position = np.argsort(first, kind="stable")
    keep = np.concatenate([first[by_position], np.asarray(alone, dtype=first.dtype)])
    return keep, np.concatenate([counts[by_position], np.ones(len(alone))])


def gather(rows: Rows, keep: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``keep`` of ``rows`` as one (len(keep) × d) array, written into ``out`` if given."""
    if isinstance(rows, np.ndarray):
        return np.take(rows, keep, axis=0, out=out)
    return np.stack([rows[row] for row in keep], out=out)


def distinct_states(rows: Rows) -> DistinctStates | None:
    """The distinct rows of ``rows`` and their counts (:func:`distinct_rows`), or ``None``."""
    found = distinct_rows(rows)
    if found is None:
        return None
    keep, counts = found
    return DistinctStates(stacked(gather(rows, keep)), counts)
