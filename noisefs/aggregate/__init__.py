"""Streaming aggregation: running sums of trajectory snapshots, and folding them.

``sums`` holds :class:`Aggregator` (ZHERK folds, ⟨Z⟩ sums, exact state and merge),
``linalg`` the reshapes and partial traces, ``fold`` the one all-or-nothing fold of a
batch's snapshots from the arena, ``checkpoint`` the atomic checkpoint file.
"""

from __future__ import annotations

from noisefs.aggregate.fold import fold_batch, release_all
from noisefs.aggregate.linalg import z_expectations, z_signs
from noisefs.aggregate.sums import Aggregator, SumsShape

__all__ = ["Aggregator", "SumsShape", "fold_batch", "release_all", "z_expectations", "z_signs"]
