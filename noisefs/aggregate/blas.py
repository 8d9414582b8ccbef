"""The fold's BLAS: the rank-k update Σ_b ψ_b ψ_b† (SciPy's ZHERK), and its threads.

While a run's loop folds beside a running Aer job, both cores are Aer's. A multi-threaded
OpenBLAS then only contends with Aer's OpenMP threads (its workers spin between calls):
on a 9-qubit GHZ run of 20,000 trajectories on 2 cores the process spent 5.70 CPU
seconds with two BLAS threads and 5.09 with one (``benchmarks/bench_floor.py``).
:func:`one_thread` holds every BLAS library of the process at one thread for a block
(threadpoolctl): numpy's OpenBLAS and SciPy's own, a second library. ZHERK's last bits
depend on its thread count (from ~1,024² up), so whoever limits it decides per batch, by
the batch alone (:meth:`noisefs.pipeline.loop.RunLoop._blas_threads`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["add_outer_products", "one_thread"]


@functools.cache
def _zherk():
    """SciPy's BLAS ZHERK (SciPy's imports are paid once, by the first fold or block)."""
    from scipy.linalg.blas import zherk  # lazy: ~0.2 s (Qiskit's T1/T2 errors load it too)

    return zherk


@contextmanager
def one_thread() -> Iterator[None]:
    """Every BLAS library in this process runs one thread inside the block; restored after.

    For the run loop, whose folds share the cores with Aer's simulating threads. SciPy's
    BLAS is loaded first, so that the limit covers it too."""
    _zherk()
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def add_outer_products(upper: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``upper`` + the upper triangle of Σ_b r_b r_b† for the rows r_b of ``rows`` (B × d).

    ``upper`` is a Fortran-ordered (d × d) sum whose strict lower triangle stays zero (as
    ZHERK keeps it). Returns the updated sum: ``upper`` itself, changed in place."""
    if rows.shape[0] == 0:
        return upper
    return _zherk()(1.0, rows.T, beta=1.0, c=upper, overwrite_c=1)
