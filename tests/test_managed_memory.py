"""What a managed job with per-shot state saves holds: the averaged ρ are made in their running
sums' own memory (no sum kept beside the matrix it became), the Result holds one matrix per
save and no per-shot list, and a batch's per-shot states are bounded by the sizer.

Memory is counted with ``tracemalloc`` (numpy's allocations, exactly, whatever the load), not
with RSS."""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from noisefs.aerscope import managed
from noisefs.aerscope.plan import MIN_STATE_BUDGET, bounded_batch, state_budget
from noisefs.aerscope.rewrite import LabelSpec
from noisefs.aggregate import Aggregator
from tests.test_managed import noise_model


def _random_states(rng, rows: int, n: int) -> np.ndarray:
    psi = rng.normal(size=(rows, 2**n)) + 1j * rng.normal(size=(rows, 2**n))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("n", "keep"), [(1, None), (3, None), (8, None), (9, (0, 2, 4, 5, 6, 7, 8)), (4, (2,))]
)
def test_take_rho_is_rho_bit_for_bit_in_the_sums_own_memory(n, keep):
    rng = np.random.default_rng(n)
    density = "full" if keep is None else "reduced"
    agg = Aggregator(n, 2, density=density, keep=keep)
    for rows in (5, 1, 7):
        agg.fold_states(0, _random_states(rng, rows, n))
        agg.fold_states(1, _random_states(rng, rows, n))
    agg.rho_sum[1][0, -1] = -0.0  # signed zeros go through as rho() makes them
    reference = copy.deepcopy(agg).rho()
    sums = list(agg.rho_sum)
    for step in (1, 0):
        rho = agg.take_rho(step)
        assert rho.tobytes() == reference[step].tobytes()
        assert rho.flags.c_contiguous and np.shares_memory(rho, sums[step])
        assert agg.rho_sum[step] is None
    with pytest.raises(ValueError, match="was taken"):
        agg.take_rho(0)


def test_take_rho_without_density_is_none():
    agg = Aggregator(3, 1, density="none")
    agg.fold_states(0, _random_states(np.random.default_rng(0), 4, 3))
    assert agg.take_rho(0) is None


def _five_saves(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    for layer in range(5):
        for q in range(n):
            qc.rx(0.3 + 0.1 * q + 0.05 * layer, q)
        for q in range(n - 1):
            qc.cx(q, q + 1)
        qc.save_statevector(label=f"s{layer}", pershot=True)
    return qc


def test_a_job_holds_its_averaged_results_once_not_beside_their_sums(arena_root, tmp_path):
    """Five per-shot saves of 9 qubits (five 4 MiB averaged ρ): the numpy memory a batched
    job holds at its peak is the five ρ plus a fold's temporaries (one label's stacked states
    of a batch of 25, their probabilities: ~0.7 MiB here), not the five running sums and a
    sixth matrix beside them (24 MiB before each ρ was made in its sum)."""
    n, shots = 9, 100
    qc = _five_saves(n)
    sim = AerSimulator(noise_model=noise_model())
    rho_bytes = 16 * 4**n
    with managed(batch=25, root=arena_root, quota="64MiB", spill_dir=tmp_path / "s", quiet=True):
        sim.run(qc, shots=4, seed_simulator=1).result()  # first-use imports and caches
        tracemalloc.start()
        try:
            result = sim.run(qc, shots=shots, seed_simulator=3).result()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    note = result.metadata["noisefs"]
    assert note["mode"] == "batched" and note["batches"] == 4
    data = result.data()
    saves = [data[f"s{k}"] for k in range(5)]
    assert all(type(s).__name__ == "DensityMatrix" for s in saves)  # no per-shot list
    assert not any(isinstance(v, list) for v in data.values())
    assert peak <= 5 * rho_bytes + (2 << 20), peak / 2**20
    with_list = AerSimulator(noise_model=noise_model()).run(qc, shots=shots, seed_simulator=3)
    states = with_list.result().data()["s4"]
    expected = sum(np.outer(v, np.conj(v)) for v in map(np.asarray, states)) / shots
    assert np.max(np.abs(np.asarray(saves[4]) - expected)) < 1e-12


def _spec(width: int, keep: tuple[int, ...] | None = None, kind: str = "state") -> LabelSpec:
    return LabelSpec("s", kind, False, "save_density_matrix", "average", keep, width)


def test_the_sizer_bounds_a_batch_by_a_share_of_the_results_it_folds_into():
    ten = [{f"s{k}": _spec(10) for k in range(5)}]  # 5 x 16 KiB per shot, 5 x 16 MiB of rho
    budget = state_budget(ten, quota=256 << 20)
    assert budget == 5 * (16 << 20) // 8
    assert bounded_batch(256, ten, budget) == 128
    # small results: the 4 MiB floor; a quota smaller than that: half of it
    five = [{"s": _spec(5)}]
    assert state_budget(five, quota=256 << 20) == MIN_STATE_BUDGET
    assert state_budget(five, quota=1 << 20) == 1 << 19
    # states folded to a few kept qubits: the results are small, the floor holds
    kept = [{"s": _spec(20, keep=(0, 1))}]
    assert state_budget(kept, quota=None) == MIN_STATE_BUDGET
    assert bounded_batch(256, kept, MIN_STATE_BUDGET) == 1
    # no per-shot state: the user's batch
    assert bounded_batch(256, [{"m": LabelSpec("m", "mean", False, "x", "average")}], 1) == 256
