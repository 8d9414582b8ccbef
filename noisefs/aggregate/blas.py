"""The fold's BLAS: the rank-k update Σ_b ψ_b ψ_b† (SciPy's ZHERK), and its threads.

A fold of B states of dimension d runs on one BLAS thread when it is small (B·d² below
``SMALL_FOLD``), with the process's BLAS threads otherwise. A small fold gains nothing
from threads, and in a run it shares the 2 cores with the next Aer job: OpenBLAS's
workers spin for a while after each multi-threaded call, against Aer's OpenMP threads.
Measured with ``noisefs run`` (medians of 3, 2 cores): a 9-qubit GHZ of 20,000
trajectories (folds of ~50-150 distinct states) took 2.86 s with one BLAS thread and
3.06 s with two; a 12-qubit QFT of 400 (folds of up to 223 × 4,096²) 8.36 s with one and
7.56 s with two. The choice depends on the fold alone, never on timing: ZHERK's last bits
depend on its thread count (from ~1,024² up), and results with ``--batch`` are
bit-identical from run to run.

threadpoolctl sets the thread count of every BLAS library loaded: numpy's OpenBLAS and
SciPy's own, a second library (loaded first, so that the limit covers it).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["SMALL_FOLD", "add_outer_products", "threads_for"]

# B·d² below which a fold runs one BLAS thread: ~0.3 s of single-threaded ZHERK at 2^30
SMALL_FOLD = 2**30


@functools.cache
def _zherk():
    """SciPy's BLAS ZHERK (SciPy's imports are paid once; Qiskit's T1/T2 errors load it too)."""
    from scipy.linalg.blas import zherk  # lazy: ~0.2 s of imports

    return zherk


@functools.cache
def _controller() -> ThreadpoolController:
    _zherk()  # SciPy's OpenBLAS among the libraries the controller sees
    return ThreadpoolController()


def threads_for(rows: int, dim: int) -> AbstractContextManager:
    """The BLAS threads for folding ``rows`` states of dimension ``dim``: a context that
    holds every BLAS library at one thread for a small fold, and changes nothing for a
    large one."""
    if rows * dim * dim >= SMALL_FOLD:
        return nullcontext()
    return _controller().limit(limits=1, user_api="blas")


def add_outer_products(upper: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``upper`` + the upper triangle of Σ_b r_b r_b† for the rows r_b of ``rows`` (B × d).

    ``upper`` is a Fortran-ordered (d × d) sum whose strict lower triangle stays zero (as
    ZHERK keeps it). Returns the updated sum: ``upper`` itself, changed in place."""
    if rows.shape[0] == 0:
        return upper
    return _zherk()(1.0, rows.T, beta=1.0, c=upper, overwrite_c=1)
