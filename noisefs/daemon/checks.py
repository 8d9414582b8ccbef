"""What an inbox file must hold to be folded: a state vector ψ of shape ``(d,)`` or a
density matrix ρ of shape ``(d, d)``, ``d = 2ⁿ`` (at most ``MAX_QUBITS``, the run's own
dimension once its first file fixed it), finite and normalised. Each check returns the
reason a file is rejected for, or ``""``.
"""

from __future__ import annotations

import cmath

import numpy as np

MAX_QUBITS = 12  # a (2ⁿ, 2ⁿ) running sum per step: 256 MiB at 12 qubits


def shape_problem(shape: tuple[int, ...], run_qubits: int | None) -> str:
    """``shape`` or ``too_large`` when ``shape`` is not a state's or the run's; ``""``."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != shape[1]):
        return "shape"
    d = shape[0]
    if d < 2 or d & (d - 1):
        return "shape"
    if d > 2**MAX_QUBITS:
        return "too_large"
    if run_qubits is not None and d != 2**run_qubits:
        return "shape"
    return ""


def array_problem(arr: np.ndarray) -> str:
    """``not_finite`` or ``not_normalized`` (‖ψ‖² or tr ρ off 1 by more than 1e-6, 1e-4
    for single precision); ``""`` for a good state."""
    # one pass each: a sum is finite only when every element is (ψ: Σ|a|², ρ: Σ a)
    if arr.ndim == 1:
        norm = total = float(np.vdot(arr, arr).real)
    else:
        norm, total = float(np.trace(arr).real), complex(arr.sum())
    if not cmath.isfinite(total):
        return "not_finite"
    tol = 1e-4 if arr.dtype.itemsize <= 8 else 1e-6
    if abs(norm - 1.0) > tol:
        return "not_normalized"
    return ""
