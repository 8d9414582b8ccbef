"""The aggregator against direct numpy sums."""

from __future__ import annotations

import numpy as np
import pytest

from noisefs.aggregate import Aggregator, z_signs


def random_states(rng, batch, n):
    psi = rng.normal(size=(batch, 2**n)) + 1j * rng.normal(size=(batch, 2**n))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


def test_fold_states_equals_sum_of_outer_products_over_batches():
    rng = np.random.default_rng(1)
    n = 3
    agg = Aggregator(n, 1)
    batches = [random_states(rng, b, n) for b in (5, 1, 7)]
    for psi in batches:
        agg.fold_states(0, psi)
    everything = np.concatenate(batches)
    expected = sum(np.outer(p, p.conj()) for p in everything) / len(everything)
    assert np.max(np.abs(agg.rho()[0] - expected)) < 1e-14
    assert np.allclose(agg.rho()[0], agg.rho()[0].conj().T)
    assert np.allclose(agg.probabilities()[0], (np.abs(everything) ** 2).mean(axis=0))
    z = (np.abs(everything) ** 2) @ z_signs(n)
    assert np.allclose(agg.z_mean()[0], z.mean(axis=0))
    assert np.allclose(agg.z_stderr()[0], z.std(axis=0, ddof=1) / np.sqrt(len(z)))


def test_dense_fold_equals_factored_fold():
    rng = np.random.default_rng(2)
    psi = random_states(rng, 6, 2)
    rhos = psi[:, :, None] * psi.conj()[:, None, :]
    a, b = Aggregator(2, 1), Aggregator(2, 1)
    a.fold_states(0, psi)
    b.fold_densities(0, rhos)
    assert np.max(np.abs(a.rho() - b.rho())) < 1e-14
    assert np.allclose(a.z_stderr(), b.z_stderr())


@pytest.mark.parametrize("keep", [(0,), (1,), (0, 2), (0, 1), (1, 2)])
def test_reduced_density_is_the_partial_trace(keep):
    keep = tuple(sorted(keep))
    rng = np.random.default_rng(3)
    n = 3
    psi = random_states(rng, 4, n)
    full = Aggregator(n, 1)
    full.fold_states(0, psi)
    reduced = Aggregator(n, 1, density="reduced", keep=keep)
    reduced.fold_states(0, psi)
    dense = Aggregator(n, 1, density="reduced", keep=keep)
    dense.fold_densities(0, psi[:, :, None] * psi.conj()[:, None, :])
    from qiskit.quantum_info import DensityMatrix, partial_trace

    traced = partial_trace(
        DensityMatrix(full.rho()[0]), [q for q in range(n) if q not in keep]
    ).data
    assert np.max(np.abs(reduced.rho()[0] - traced)) < 1e-14
    assert np.max(np.abs(dense.rho()[0] - traced)) < 1e-14


def test_state_round_trip_is_exact():
    rng = np.random.default_rng(4)
    agg = Aggregator(2, 2)
    agg.fold_states(0, random_states(rng, 3, 2))
    agg.fold_states(1, random_states(rng, 3, 2))
    copy = Aggregator(2, 2)
    copy.load_state(agg.state())
    psi = random_states(rng, 2, 2)
    agg.fold_states(1, psi)
    copy.fold_states(1, psi)
    assert np.array_equal(agg.rho(), copy.rho())
    assert np.array_equal(agg.z_stderr(), copy.z_stderr())


def test_checkpoint_state_of_version_0_1_0_with_stacked_sums_loads():
    rng = np.random.default_rng(5)
    agg = Aggregator(2, 2)
    agg.fold_states(0, random_states(rng, 3, 2))
    agg.fold_states(1, random_states(rng, 4, 2))
    state = agg.state()
    old = {k: v for k, v in state.items() if not k.startswith("rho_sum_")}
    old["rho_sum"] = np.stack([state["rho_sum_0"], state["rho_sum_1"]])
    copy = Aggregator(2, 2)
    copy.load_state(old)
    assert np.array_equal(agg.rho(), copy.rho())


def test_probabilities_only_mode_keeps_no_matrix():
    agg = Aggregator(2, 1, density="none")
    agg.fold_states(0, np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=complex))
    assert agg.rho() is None
    assert np.allclose(agg.probabilities()[0], [0.5, 0, 0, 0.5])
    assert np.allclose(agg.z_mean()[0], [0, 0])
    # sample std of (+1, -1) is sqrt(2); divided by sqrt(2 trajectories)
    assert np.allclose(agg.z_stderr()[0], [1, 1])


def test_an_empty_batch_changes_nothing():
    agg = Aggregator(2, 1)
    agg.fold_states(0, np.zeros((0, 4), dtype=complex))
    agg.fold_states(0, np.array([[1, 0, 0, 0]], dtype=complex))
    assert agg.count[0] == 1 and np.allclose(agg.z_mean()[0], [1, 1])


def _batch_with_repeats(seed: int, dim: int = 16, distinct: int = 5, rows: int = 60):
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((distinct, dim)) + 1j * rng.standard_normal((distinct, dim))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    batch = pool[rng.integers(0, distinct, rows)].copy()
    # near-twins: one element one ulp away, which must never be merged with its twin
    batch[3, 2] = np.nextafter(batch[3, 2].real, np.inf) + 1j * batch[3, 2].imag
    batch[7, 0] = batch[7, 0].real + 1j * np.nextafter(batch[7, 0].imag, -np.inf)
    return batch


@pytest.mark.parametrize("seed", range(5))
def test_distinct_states_keep_every_row_with_its_count(seed):
    from collections import Counter

    from noisefs.aggregate.distinct import distinct_states

    batch = _batch_with_repeats(seed)
    distinct = distinct_states(batch)
    assert distinct is not None
    expected = Counter(row.tobytes() for row in batch)
    got = Counter()
    for row, count in zip(distinct.states, distinct.counts, strict=True):
        got[row.tobytes()] += int(count)
    assert got == expected
    assert distinct.counts.sum() == len(batch)


def test_a_batch_of_mostly_distinct_states_is_folded_as_it_is():
    from noisefs.aggregate.distinct import distinct_states

    rng = np.random.default_rng(1)
    assert distinct_states(rng.standard_normal((40, 8)) + 0j) is None


@pytest.mark.parametrize("density", ["full", "reduced", "none"])
def test_folding_repeated_states_equals_the_plain_sums(density):
    from qiskit.quantum_info import DensityMatrix, partial_trace

    n = 4
    batch = _batch_with_repeats(11, dim=2**n)
    keep = (0, 2) if density == "reduced" else None
    agg = Aggregator(n, 1, density, keep)
    agg.fold_states(0, batch[:31])
    agg.fold_states(0, batch[31:])
    probabilities = np.abs(batch) ** 2
    assert agg.folded == len(batch)
    assert np.allclose(agg.probabilities()[0], probabilities.mean(axis=0), atol=1e-15)
    z = probabilities @ z_signs(n)
    assert np.allclose(agg.z_mean()[0], z.mean(axis=0), atol=1e-15)
    assert np.allclose(agg.z_stderr()[0], z.std(axis=0, ddof=1) / np.sqrt(len(z)), atol=1e-14)
    rho = sum(np.outer(p, p.conj()) for p in batch) / len(batch)
    if density == "full":
        assert np.max(np.abs(agg.rho()[0] - rho)) < 1e-14
    elif density == "reduced":
        expected = partial_trace(DensityMatrix(rho), [1, 3]).data
        assert np.max(np.abs(agg.rho()[0] - expected)) < 1e-14
    else:
        assert agg.rho() is None


@pytest.mark.parametrize("size", [1, 2, 127, 128, 300])
def test_the_hermitian_fill_is_u_plus_u_dagger_over_the_count(size):
    from noisefs.aggregate.linalg import hermitian_from_upper

    rng = np.random.default_rng(size)
    upper = np.asfortranarray(
        np.triu(rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size)))
    )
    out = np.empty((size, size), dtype=np.complex128)
    hermitian_from_upper(upper, 7, out)
    expected = (upper + upper.conj().T) / 7
    np.fill_diagonal(expected, upper.diagonal().real / 7)
    assert np.allclose(out, expected, rtol=1e-15, atol=0)
    assert np.array_equal(out, out.conj().T)


def test_a_factored_snapshot_stores_each_distinct_state_once_and_folds_to_the_same_sums():
    from noisefs.aggregate.snapshots import encode_snapshot, fold_snapshot

    n = 4
    batch = _batch_with_repeats(21, dim=2**n, distinct=3, rows=200)
    snapshot = encode_snapshot(batch, "factored")
    assert snapshot.shape == (5, 1 + 2**n)  # 3 states and the two near-twins, each once
    assert snapshot[:, 0].real.sum() == len(batch)
    stored, direct = Aggregator(n, 1), Aggregator(n, 1)
    fold_snapshot(stored, 0, snapshot, "factored")
    direct.fold_states(0, batch)
    assert stored.folded == direct.folded == len(batch)
    expected = sum(np.outer(p, p.conj()) for p in batch) / len(batch)
    assert np.max(np.abs(stored.rho()[0] - expected)) < 1e-14
    assert np.allclose(stored.z_stderr(), direct.z_stderr(), rtol=1e-12, atol=0)


def test_a_batch_of_distinct_states_is_stored_as_it_is():
    from noisefs.aggregate.snapshots import encode_snapshot

    rng = np.random.default_rng(4)
    batch = random_states(rng, 30, 3)
    assert encode_snapshot(batch, "factored") is batch


@pytest.mark.parametrize("seed", range(3))
def test_aers_list_of_rows_gives_the_same_snapshot_as_their_stack(seed):
    from noisefs.aggregate.distinct import distinct_states
    from noisefs.aggregate.snapshots import encode_snapshot

    batch = _batch_with_repeats(seed)
    rows = [row.copy() for row in batch]  # Aer's form: one array per shot
    from_rows, from_stack = distinct_states(rows), distinct_states(batch)
    assert np.array_equal(from_rows.states, from_stack.states)
    assert np.array_equal(from_rows.counts, from_stack.counts)
    assert np.array_equal(encode_snapshot(rows, "factored"), encode_snapshot(batch, "factored"))
    assert np.array_equal(encode_snapshot(rows, "dense"), encode_snapshot(batch, "dense"))
    distinct = random_states(np.random.default_rng(seed), 30, 3)
    assert np.array_equal(encode_snapshot(list(distinct), "factored"), distinct)


@pytest.mark.parametrize(("rows", "dim"), [(0, 4), (7, 8), (300, 64)])
def test_the_rank_k_update_adds_the_upper_triangle_of_the_outer_products(rows, dim):
    from noisefs.aggregate.blas import add_outer_products

    rng = np.random.default_rng(rows)
    states = rng.standard_normal((rows, dim)) + 1j * rng.standard_normal((rows, dim))
    start = np.asfortranarray(np.triu(rng.standard_normal((dim, dim)) + 0j))
    upper = add_outer_products(start.copy(order="F"), states)
    expected = start + np.triu(states.T @ states.conj())
    assert np.max(np.abs(upper - expected)) < 1e-13 * np.abs(expected).max()
    assert not np.tril(upper, -1).any()  # the strict lower triangle stays zero


def test_a_small_fold_runs_one_blas_thread_a_large_one_the_process_threads():
    code = """
import sys
from threadpoolctl import threadpool_info
from noisefs.aggregate.blas import SMALL_FOLD, threads_for

def counts():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

assert "scipy.linalg" not in sys.modules
with threads_for(2000, 512):  # 2000 x 512^2 < SMALL_FOLD
    small = counts()
with threads_for(SMALL_FOLD // 4096**2, 4096):
    large = counts()
after = counts()
assert "scipy.linalg" in sys.modules  # SciPy's BLAS (its own OpenBLAS), loaded first
assert set(small.values()) == {1}, small
assert large.keys() == small.keys() and set(large.values()) == {2}, large
assert after == large, after  # restored
"""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
