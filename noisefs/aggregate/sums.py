"""Streaming aggregation: fold batches of trajectory snapshots into averaged states.

A batch of pure states Ψ (B × d, one trajectory per row) is folded into the running
sum Σ ψψ† with one rank-k update (:mod:`noisefs.aggregate.blas`; only the upper triangle
is kept until :meth:`Aggregator.finish`). ⟨Z_q⟩ sums and sums of squares give Monte Carlo
standard errors. The whole state is plain arrays, so it checkpoints exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from noisefs.aggregate.blas import add_outer_products, threads_for
from noisefs.aggregate.distinct import distinct_states
from noisefs.aggregate.linalg import (
    hermitian_from_upper,
    partial_trace_dense,
    reorder_qubits,
    to_kept_matrix,
    z_expectations,
)
from noisefs.observables import ObservableSet


def _weighted_sum(rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Σ_b rows[b], or Σ_u weights[u]·rows[u] for distinct rows with their counts."""
    return rows.sum(axis=0) if weights is None else weights @ rows


@dataclass(frozen=True)
class SumsShape:
    """What an :class:`Aggregator` sums (its constructor's arguments): enough for another
    process to make an empty one of the same shape."""

    num_qubits: int
    num_steps: int
    density: str
    keep: tuple[int, ...] | None
    observables: ObservableSet | None = None
    orders: tuple[tuple[int, ...] | None, ...] | None = None
    keep_probabilities: bool = True

    def empty(self) -> Aggregator:
        return Aggregator(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class Aggregator:
    """Running sums for S snapshot steps of an n-qubit run.

    ``density`` is ``"full"`` (ρ over all qubits), ``"reduced"`` (ρ over ``keep``) or
    ``"none"`` (probabilities and ⟨Z⟩ only, for circuits above ``--max-dm-qubits``).
    ``observables`` are averaged too, with their per-trajectory spread, from each ψ or ρ.
    ``orders[step]``, where given, reorders the qubits of that step's snapshots before they
    are folded (snapshot qubit ``orders[step][q]`` becomes qubit ``q``: a device's routing
    moved them).
    """

    num_qubits: int
    num_steps: int
    density: str = "full"
    keep: tuple[int, ...] | None = None
    observables: ObservableSet | None = None
    orders: tuple[tuple[int, ...] | None, ...] | None = None
    keep_probabilities: bool = True

    def __post_init__(self) -> None:
        n, s = self.num_qubits, self.num_steps
        d = 2**n
        if self.density == "reduced":
            if not self.keep:
                raise ValueError("reduced density needs kept qubits")
            dk = 2 ** len(self.keep)
        elif self.density == "full":
            dk = d
        else:
            dk = 0
        # One Fortran-ordered accumulator per step, so ZHERK updates it in place.
        self.rho_sum = [np.zeros((dk, dk), dtype=np.complex128, order="F") for _ in range(s)]
        self.prob_sum = np.zeros((s, d if self.keep_probabilities else 0), dtype=np.float64)
        self.z_sum = np.zeros((s, n), dtype=np.float64)
        self.z_sqsum = np.zeros((s, n), dtype=np.float64)
        m = len(self.observables) if self.observables is not None else 0
        self.obs_sum = np.zeros((s, m), dtype=np.float64)
        self.obs_sqsum = np.zeros((s, m), dtype=np.float64)
        self.count = np.zeros(s, dtype=np.int64)

    @property
    def shape(self) -> SumsShape:
        return SumsShape(**{f.name: getattr(self, f.name) for f in fields(SumsShape)})

    # -- folding -------------------------------------------------------------------------

    def fold_states(self, step: int, states: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Fold a batch of pure states Ψ (B × 2ⁿ), ρ_b = ψ_b ψ_b†; with ``counts``, row b
        stands for ``counts[b]`` trajectories.

        Without counts, equal rows are found and folded once with their count
        (:mod:`noisefs.aggregate.distinct`)."""
        states = np.asarray(states, dtype=np.complex128)
        if states.ndim != 2 or states.shape[1] != 2**self.num_qubits:
            raise ValueError(
                f"expected a (B, {2**self.num_qubits}) stack of states, got {states.shape}"
            )
        if counts is None:
            trajectories = states.shape[0]
            weights = None
            distinct = distinct_states(states)
            if distinct is not None:
                states, weights = distinct.states, distinct.counts
        else:
            weights = np.asarray(counts, dtype=np.float64)
            if weights.shape != states.shape[:1] or not np.all(weights == np.round(weights)):
                raise ValueError(f"counts must be {states.shape[0]} whole numbers")
            trajectories = int(weights.sum())
        with threads_for(states.shape[0], states.shape[1]):
            self._fold_rows(step, states, weights)
        self.count[step] += trajectories

    def _fold_rows(self, step: int, states: np.ndarray, weights: np.ndarray | None) -> None:
        order = self.orders[step] if self.orders else None
        if order is not None:
            states = reorder_qubits(states, order, self.num_qubits, axes=1)
        if self.density != "none":
            # Σ_u c_u ψ_u ψ_u† is the rank-k update of the rows scaled by √c_u
            scaled = states if weights is None else states * np.sqrt(weights)[:, None]
            if self.density == "reduced":  # rows whose outer products sum to Tr_rest
                scaled = to_kept_matrix(scaled, self.num_qubits, self.keep).T
            self.rho_sum[step] = add_outer_products(self.rho_sum[step], scaled)
        probabilities = states.real**2 + states.imag**2
        if self.observables is not None:
            values = self.observables.from_states(states, probabilities)
            self._fold_observables(step, values, weights)
        self._fold_diagonals(step, probabilities, weights)

    def fold_densities(self, step: int, rhos: np.ndarray) -> None:
        """Fold a batch of density matrices (B × 2ⁿ × 2ⁿ)."""
        rhos = np.asarray(rhos, dtype=np.complex128)
        d = 2**self.num_qubits
        if rhos.ndim != 3 or rhos.shape[1:] != (d, d):
            raise ValueError(
                f"expected a (B, {d}, {d}) stack of density matrices, got {rhos.shape}"
            )
        order = self.orders[step] if self.orders else None
        if order is not None:
            rhos = reorder_qubits(rhos, order, self.num_qubits, axes=2)
        if self.density == "full":
            self._add_upper(step, rhos.sum(axis=0))
        elif self.density == "reduced":
            self._add_upper(step, partial_trace_dense(rhos, self.num_qubits, self.keep))
        probabilities = np.einsum("bii->bi", rhos).real
        if self.observables is not None:
            self._fold_observables(step, self.observables.from_densities(rhos))
        self._fold_diagonals(step, probabilities)
        self.count[step] += rhos.shape[0]

    def _add_upper(self, step: int, matrix: np.ndarray) -> None:
        """Add a Hermitian matrix keeping ZHERK's convention: upper triangle only."""
        self.rho_sum[step] += np.triu(matrix)

    def _fold_observables(
        self, step: int, values: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        """``values`` (B, M): each trajectory's value of each observable (or each distinct
        state's, occurring ``weights`` times)."""
        self.obs_sum[step] += _weighted_sum(values, weights)
        self.obs_sqsum[step] += _weighted_sum(np.square(values), weights)

    def _fold_diagonals(
        self, step: int, probabilities: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        z = z_expectations(probabilities, self.num_qubits)  # (B, n): ⟨Z_q⟩ of each trajectory
        if self.keep_probabilities:
            self.prob_sum[step] += _weighted_sum(probabilities, weights)
        self.z_sum[step] += _weighted_sum(z, weights)
        self.z_sqsum[step] += _weighted_sum(np.square(z), weights)

    # -- combining -----------------------------------------------------------------------

    def compatible(self, other: Aggregator) -> bool:
        """Whether ``other`` sums the same quantities (qubits, steps, density, kept qubits,
        observables)."""
        return self.shape == other.shape

    def merge(self, other: Aggregator) -> Aggregator:
        """Add ``other``'s sums into this one (``self`` is returned).

        Exact up to floating-point addition: the sums are plain sums, so merging the folds
        of two disjoint sets of trajectories equals folding their union."""
        if not self.compatible(other):
            raise ValueError(
                f"cannot merge sums of {other.num_qubits} qubits / {other.num_steps} steps / "
                f"{other.density} into {self.num_qubits} / {self.num_steps} / {self.density}"
            )
        for mine, theirs in zip(self.rho_sum, other.rho_sum, strict=True):
            mine += theirs  # upper triangles only on both sides, in place (Fortran order kept)
        self.prob_sum += other.prob_sum
        self.z_sum += other.z_sum
        self.z_sqsum += other.z_sqsum
        self.obs_sum += other.obs_sum
        self.obs_sqsum += other.obs_sqsum
        self.count += other.count
        return self

    @classmethod
    def from_state(
        cls,
        state: dict[str, np.ndarray],
        num_qubits: int,
        num_steps: int,
        density: str = "full",
        keep: tuple[int, ...] | None = None,
        observables: ObservableSet | None = None,
    ) -> Aggregator:
        """An aggregator holding ``state`` (the inverse of :meth:`state`)."""
        aggregator = cls(num_qubits, num_steps, density, keep, observables)
        aggregator.load_state(state)
        return aggregator

    @property
    def folded(self) -> int:
        """Trajectories folded into every step (the last step counts them all)."""
        return int(self.count[-1]) if self.count.size else 0

    # -- results -------------------------------------------------------------------------

    def rho(self) -> np.ndarray | None:
        """Averaged density matrices (S × dk × dk), Hermitian, or None when not kept."""
        if self.density == "none":
            return None
        out = np.empty((self.num_steps,) + self.rho_sum[0].shape, dtype=np.complex128)
        for step, upper in enumerate(self.rho_sum):
            hermitian_from_upper(upper, max(1, self.count[step]), out[step])
        return out

    def take_rho(self, step: int) -> np.ndarray | None:
        """The averaged ρ of ``step``, equal to ``rho()[step]`` bit for bit, made in the
        running sum's own memory (no second matrix): the step's sum is spent
        (``rho_sum[step]`` is None after). None when ρ is not kept."""
        if self.density == "none":
            return None
        upper = self.rho_sum[step]
        if upper is None:
            raise ValueError(f"the running sum of step {step} was taken")
        self.rho_sum[step] = None
        return hermitian_from_upper(upper, max(1, self.count[step]), upper.T)

    def probabilities(self) -> np.ndarray | None:
        """(S, 2ⁿ) averaged probabilities, or None when they are not kept."""
        if not self.keep_probabilities:
            return None
        return self.prob_sum / np.maximum(1, self.count)[:, None]

    def z_mean(self) -> np.ndarray:
        return self.z_sum / np.maximum(1, self.count)[:, None]

    def z_stderr(self) -> np.ndarray:
        """Standard error of the mean of ⟨Z_q⟩ over trajectories (sample std, ddof=1)."""
        return _stderr(self.z_sum, self.z_sqsum, self.count)

    def observables_mean(self) -> np.ndarray:
        """(S, M): each observable's mean over the trajectories at each step."""
        return self.obs_sum / np.maximum(1, self.count)[:, None]

    def observables_stderr(self) -> np.ndarray:
        """(S, M): the standard error of each observable's mean (sample std, ddof=1)."""
        return _stderr(self.obs_sum, self.obs_sqsum, self.count)

    # -- checkpointing -------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that reproduce this aggregator exactly (see :meth:`load_state`)."""
        state = {
            "prob_sum": self.prob_sum,
            "z_sum": self.z_sum,
            "z_sqsum": self.z_sqsum,
            "count": self.count,
        }
        if self.obs_sum.shape[1]:
            state.update({"obs_sum": self.obs_sum, "obs_sqsum": self.obs_sqsum})
        if self.density != "none":  # one array per step: no stacked copy of every sum
            state.update({f"rho_sum_{i}": upper for i, upper in enumerate(self.rho_sum)})
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.prob_sum = np.array(state["prob_sum"], dtype=np.float64)
        self.z_sum = np.array(state["z_sum"], dtype=np.float64)
        self.z_sqsum = np.array(state["z_sqsum"], dtype=np.float64)
        self.count = np.array(state["count"], dtype=np.int64)
        if self.obs_sum.shape[1]:
            self.obs_sum = np.array(state["obs_sum"], dtype=np.float64)
            self.obs_sqsum = np.array(state["obs_sqsum"], dtype=np.float64)
        if self.density != "none":
            if "rho_sum" in state:  # checkpoints of noisefs 0.1.0 stacked the sums
                state = {f"rho_sum_{i}": s for i, s in enumerate(state["rho_sum"])}
            self.rho_sum = [
                np.asfortranarray(state[f"rho_sum_{i}"], dtype=np.complex128)
                for i in range(self.num_steps)
            ]


def _stderr(sums: np.ndarray, sqsums: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The standard error of the mean of (S, X) per-trajectory values from their sums and
    sums of squares over ``count`` (S,) trajectories (sample std, ddof=1)."""
    k = count[:, None].astype(np.float64)
    mean = sums / np.maximum(1, k)
    variance = (sqsums - k * mean**2) / np.maximum(1, k - 1)
    return np.sqrt(np.clip(variance, 0.0, None) / np.maximum(1, k))
