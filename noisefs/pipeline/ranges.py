"""Sets of trajectory indices as sorted, disjoint half-open ranges.

What a run has folded is recorded this way — not as batch numbers — so a checkpoint means
the same whatever batch sizes were chosen before or after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class TrajectoryRanges:
    """A set of trajectory indices, kept as sorted, disjoint, non-adjacent [start, stop)."""

    def __init__(self, ranges: list[tuple[int, int]] | np.ndarray | None = None) -> None:
        self._ranges: list[tuple[int, int]] = []
        for start, stop in [] if ranges is None else np.asarray(ranges).reshape(-1, 2):
            self.add(int(start), int(stop))

    def add(self, start: int, stop: int) -> None:
        """Add [start, stop); overlapping an existing range is a bug (counted twice)."""
        if not 0 <= start < stop:
            raise ValueError(f"not a trajectory range: [{start}, {stop})")
        if self.overlaps(start, stop):
            raise ValueError(f"trajectories [{start}, {stop}) are already in the set")
        merged = [*self._ranges, (start, stop)]
        merged.sort()
        out: list[tuple[int, int]] = []
        for lo, hi in merged:
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        self._ranges = out

    def overlaps(self, start: int, stop: int) -> bool:
        return any(lo < stop and start < hi for lo, hi in self._ranges)

    def gaps(self, limit: int) -> Iterator[tuple[int, int]]:
        """The missing ranges below ``limit``, in order."""
        position = 0
        for lo, hi in self._ranges:
            if lo >= limit:
                break
            if lo > position:
                yield position, lo
            position = max(position, hi)
        if position < limit:
            yield position, limit

    @property
    def total(self) -> int:
        return sum(hi - lo for lo, hi in self._ranges)

    @property
    def highest(self) -> int:
        """One past the highest index in the set (0 when empty)."""
        return self._ranges[-1][1] if self._ranges else 0

    def is_prefix(self) -> bool:
        """Whether the set is exactly 0 .. highest - 1 (contiguous from the start)."""
        return not self._ranges or (len(self._ranges) == 1 and self._ranges[0][0] == 0)

    def to_array(self) -> np.ndarray:
        return np.asarray(self._ranges, dtype=np.int64).reshape(-1, 2)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """The ranges as sorted, disjoint, non-adjacent ``(start, stop)`` pairs."""
        return tuple(self._ranges)

    def copy(self) -> TrajectoryRanges:
        return TrajectoryRanges(self._ranges)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrajectoryRanges) and self.pairs == other.pairs

    def __repr__(self) -> str:
        return f"TrajectoryRanges({self._ranges})"
