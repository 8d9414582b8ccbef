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
