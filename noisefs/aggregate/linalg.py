"""Linear algebra of the folds: ⟨Z_q⟩ from probabilities, partial traces of batches."""

from __future__ import annotations

import numpy as np


def z_expectations(probabilities: np.ndarray, num_qubits: int) -> np.ndarray:
    """⟨Z_q⟩ of each row of ``probabilities`` (B × 2ⁿ): (B × n), qubit 0 least significant.

    Summed over reshaped views, so no 2ⁿ × n sign table is ever built (at 26 qubits that
    table alone would take 13 GiB)."""
    batch = probabilities.shape[0]
    out = np.zeros((batch, num_qubits), dtype=np.float64)
    if batch == 0:
        return out
    rest = probabilities
    for q in reversed(range(num_qubits)):  # peel off the most significant qubit each time
        halves = rest.reshape(batch, 2, -1)
        sums = halves.sum(axis=2)
        out[:, q] = sums[:, 0] - sums[:, 1]
        rest = halves[:, 0] + halves[:, 1]
    return out


def z_signs(num_qubits: int) -> np.ndarray:
    """(2ⁿ, n) matrix of eigenvalues of Z_q on each basis state (qubit 0 least significant)."""
    index = np.arange(2**num_qubits)[:, None]
    bits = (index >> np.arange(num_qubits)[None, :]) & 1
    return (1 - 2 * bits).astype(np.float64)


def to_kept_matrix(states: np.ndarray, num_qubits: int, keep: tuple[int, ...]) -> np.ndarray:
    """Reshape Ψ (B × 2ⁿ) into A (2ᵏ × B·2ⁿ⁻ᵏ) so that A A† = Σ_b Tr_rest ψ_b ψ_b†."""
    batch = states.shape[0]
    tensor = states.reshape((batch,) + (2,) * num_qubits)
    # tensor axis 1 + a holds qubit n-1-a (C order: most significant first)
    rest = [q for q in range(num_qubits) if q not in keep]
    kept_axes = [1 + num_qubits - 1 - q for q in reversed(keep)]
    rest_axes = [1 + num_qubits - 1 - q for q in reversed(rest)]
    moved = tensor.transpose(kept_axes + [0] + rest_axes)
    return moved.reshape(2 ** len(keep), batch * 2 ** len(rest))


def partial_trace_dense(rhos: np.ndarray, num_qubits: int, keep: tuple[int, ...]) -> np.ndarray:
    """Σ_b Tr_rest ρ_b for a stack of density matrices (B × 2ⁿ × 2ⁿ)."""
    n = num_qubits
    tensor = rhos.reshape((rhos.shape[0],) + (2,) * (2 * n))
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    row = [letters[i] for i in range(n)]
    col = [letters[n + i] for i in range(n)]
    for q in range(n):
        if q not in keep:
            col[n - 1 - q] = row[n - 1 - q]  # trace: same index on row and column
    out_row = [row[n - 1 - q] for q in reversed(keep)]
    out_col = [col[n - 1 - q] for q in reversed(keep)]
    # "Z" (the batch axis) is never among the 2n ≤ 50 index letters used above
    spec = "Z" + "".join(row) + "".join(col) + "->Z" + "".join(out_row) + "".join(out_col)
    d = 2 ** len(keep)
    return np.einsum(spec, tensor).reshape(-1, d, d).sum(axis=0)


def reorder_qubits(
    stack: np.ndarray, order: tuple[int, ...], num_qubits: int, axes: int
) -> np.ndarray:
    """A (B, 2ⁿ) stack of states (``axes=1``) or (B, 2ⁿ, 2ⁿ) of density matrices (``axes=2``)
    with its qubits reordered: qubit ``order[q]`` of the input becomes qubit ``q``.

    Qiskit's order: qubit ``q`` is bit ``q`` of an index, the tensor axis ``n - 1 - q``."""
    n = num_qubits
    batch = stack.shape[0]
    # output axis n-1-q (qubit q) takes input axis n-1-order[q]
    perm = [n - 1 - order[n - 1 - axis] for axis in range(n)]
    shape = (batch,) + (2,) * (n * axes)
    full = [0] + [1 + p for p in perm]
    if axes == 2:
        full += [1 + n + p for p in perm]
    out = stack.reshape(shape).transpose(full)
    return np.ascontiguousarray(out).reshape(stack.shape)


HERMITIAN_TILE = 128  # 128 × 128 complex tiles: 256 KiB, a pair fits in L2


def hermitian_from_upper(upper: np.ndarray, divisor: float, out: np.ndarray) -> np.ndarray:
    """``out`` = (U + U† with U's diagonal once) / ``divisor``, for U upper triangular (its
    strict lower triangle zero) and Fortran-ordered, as ZHERK leaves it; the diagonal is
    made real.

    One streaming pass writes U^T / divisor (contiguous: U is Fortran-ordered; real and
    imaginary parts divided as reals, each correctly rounded); then, tile by tile, each lower
    tile is mirrored into its upper twin and conjugated in place. A whole-matrix
    ``out += U`` would read U across rows, a cache miss per element: ~2-4x slower at 12
    qubits.

    ``out`` may be ``upper.T`` itself (ρ then takes the sum's own memory, no second matrix:
    ``Aggregator.take_rho``): the diagonal is read before anything is written."""
    size = upper.shape[0]
    upper = np.asfortranarray(upper)  # as ZHERK leaves it (a copy only if it is not)
    diagonal_values = upper.diagonal().real / divisor
    # lower triangle: conj(ρ); upper: zero
    np.divide(upper.T.view(np.float64), divisor, out=out.view(np.float64))
    tile = HERMITIAN_TILE
    for i in range(0, size, tile):
        diagonal = out[i : i + tile, i : i + tile]
        above = np.triu_indices(diagonal.shape[0], 1)
        diagonal[above] = diagonal.T[above]
        below = np.tril_indices(diagonal.shape[0], -1)
        diagonal[below] = diagonal[below].conj()
        for j in range(i + tile, size, tile):
            lower = out[j : j + tile, i : i + tile]
            out[i : i + tile, j : j + tile] = lower.T
            np.conjugate(lower, out=lower)
    np.fill_diagonal(out, diagonal_values)
    return out
