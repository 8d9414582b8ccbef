"""Observables: a run's Pauli sums bound to its qubits, and their per-trajectory values.

A Pauli string acts on a basis state as an index flip and a sign: with ``x`` the mask of
qubits carrying X or Y and ``z`` the mask of those carrying Z or Y,
``P|j⟩ = i^{#Y} (-1)^{popcount(j & z)} |j ^ x⟩``. So ``⟨ψ|P|ψ⟩`` of a whole batch of states
is one gather and one weighted sum, O(B·2ⁿ) per term, and ``Tr(Pρ)`` reads one permuted
diagonal of each ρ; no operator matrix is ever built.

The user's forms of an observable are read in :mod:`noisefs.observable_forms` (re-exported
here: :class:`PauliTerm`, :class:`Observable`, :func:`parse_observables`,
:func:`load_observables_file`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from noisefs.errors import InputError
from noisefs.observable_forms import (
    Observable,
    PauliTerm,
    load_observables_file,
    parse_observables,
    sparse_term,
)

__all__ = [
    "Observable",
    "ObservableSet",
    "PauliTerm",
    "load_observables_file",
    "parse_observables",
]


@dataclass(frozen=True)
class ObservableSet:
    """The observables of a run, bound to its qubit count; picklable (sent to workers)."""

    num_qubits: int
    observables: tuple[Observable, ...]
    label_width: int | None = None  # the user's qubits (fewer than simulated on a device)

    def __post_init__(self) -> None:
        n = self.num_qubits if self.label_width is None else self.label_width
        for observable in self.observables:
            for term in observable.terms:
                if term.width and term.width != n:
                    raise InputError(
                        f"observable {observable.name!r}: the label of {term.width} Pauli "
                        f"letters does not match the circuit's {n} qubits (Qiskit order: "
                        "the rightmost letter is qubit 0); or use a sparse label such as 'Z0 Z3'"
                    )
            if observable.largest_qubit() >= n:
                raise InputError(
                    f"observable {observable.name!r} acts on qubit {observable.largest_qubit()}, "
                    f"but the circuit has {n} qubit(s) (0..{n - 1})"
                )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    def __len__(self) -> int:
        return len(self.observables)

    def to_meta(self) -> list[dict]:
        """JSON-able: each observable's name and its terms ``[sparse label, coeff]``."""
        return [
            {"name": o.name, "terms": [[t.label(), t.coeff] for t in o.terms]}
            for o in self.observables
        ]

    @classmethod
    def from_meta(cls, meta: list[dict], num_qubits: int) -> ObservableSet:
        """The inverse of :meth:`to_meta`."""
        observables = tuple(
            Observable(
                str(entry["name"]),
                tuple(
                    sparse_term(str(label), float(coeff), str(entry["name"]))
                    for label, coeff in entry["terms"]
                ),
            )
            for entry in meta
        )
        return cls(num_qubits, observables)

    def remapped(self, order: tuple[int, ...]) -> ObservableSet:
        """The same observables with qubit ``q`` moved to ``order[q]``."""
        return ObservableSet(
            self.num_qubits,
            tuple(
                Observable(
                    o.name,
                    tuple(
                        PauliTerm(t.coeff, tuple(sorted((order[q], p) for q, p in t.factors)))
                        for t in o.terms
                    ),
                )
                for o in self.observables
            ),
        )

    def sparse_pauli_ops(self) -> list:
        """Each observable as a ``SparsePauliOp`` on all the circuit's qubits."""
        from qiskit.quantum_info import SparsePauliOp  # lazy: qiskit only when asked

        return [
            SparsePauliOp.from_sparse_list(
                [
                    ("".join(p for _, p in t.factors), [q for q, _ in t.factors], t.coeff)
                    for t in observable.terms
                ],
                num_qubits=self.num_qubits,
            )
            for observable in self.observables
        ]

    # -- values ------------------------------------------------------------------------

    def from_states(self, states: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Each observable's value in each pure state: (B, M) from a (B, 2ⁿ) stack and its
        (B, 2ⁿ) probabilities |ψ|².

        The flip of a term's X/Y qubits is a reversed-axes view of ψ as a (2,)*n tensor (no
        index gather); rows are taken a few at a time so that a product stays ~64 MiB."""
        n = self.num_qubits
        out = np.empty((states.shape[0], len(self.observables)))
        rows = max(1, _CHUNK_ELEMENTS >> n)
        for start in range(0, states.shape[0], rows):
            chunk = states[start : start + rows]
            tensor = chunk.reshape((chunk.shape[0],) + (2,) * n)

            def products(x_mask: int, chunk=chunk, tensor=tensor, start=start) -> np.ndarray:
                if x_mask == 0:
                    return probabilities[start : start + rows]
                axes = tuple(n - q for q in range(n) if x_mask >> q & 1)
                flipped = np.flip(tensor, axis=axes)
                return (np.conj(flipped) * tensor).reshape(chunk.shape)

            out[start : start + rows] = self._values(chunk.shape[0], products)
        return out

    def from_densities(self, rhos: np.ndarray) -> np.ndarray:
        """Each observable's value ``Tr(Oρ)`` for a (B, 2ⁿ, 2ⁿ) stack: (B, M)."""
        base = _indices(self.num_qubits)

        def products(x_mask: int) -> np.ndarray:
            # Tr(Pρ) = i^{#Y} Σ_k (-1)^{popcount(k & z)} ρ[k, k ^ x]
            return rhos[:, base, base ^ x_mask]

        return self._values(rhos.shape[0], products)

    def _values(self, batch: int, products) -> np.ndarray:
        out = np.zeros((batch, len(self.observables)), dtype=np.float64)
        by_flip: dict[int, list[tuple[int, PauliTerm]]] = {}
        for m, observable in enumerate(self.observables):
            for term in observable.terms:
                by_flip.setdefault(term.x_mask, []).append((m, term))
        for x_mask, terms in by_flip.items():
            product = products(x_mask)  # (B, 2ⁿ): one flip shared by the terms
            for m, term in terms:
                if term.z_mask == 0:
                    value = product.sum(axis=1)
                else:
                    value = product @ _signs(self.num_qubits, term.z_mask)
                out[:, m] += term.coeff * (1j**term.num_y * value).real
        return out


_CHUNK_ELEMENTS = 1 << 22  # amplitudes per product: 64 MiB of complex128


@functools.lru_cache(maxsize=4)
def _indices(num_qubits: int) -> np.ndarray:
    return np.arange(2**num_qubits, dtype=np.int64)


@functools.lru_cache(maxsize=16)  # 8 MiB each at 20 qubits
def _signs(num_qubits: int, z_mask: int) -> np.ndarray:
    """(-1)^{popcount(j & z)} for every basis index j (float64: a BLAS matrix-vector)."""
    j = _indices(num_qubits)
    parity = np.zeros(j.shape, dtype=np.int64)
    for q in range(num_qubits):
        if z_mask >> q & 1:
            parity ^= (j >> q) & 1
    return 1.0 - 2.0 * parity
