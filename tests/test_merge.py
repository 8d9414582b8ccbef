"""Aggregator.merge: folding A ∪ B equals merging the folds of A and B (exact sums)."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from noisefs.aggregate import Aggregator
from noisefs.errors import ArenaFull, CircuitError, InputError

N, STEPS = 3, 2


def _states(rng: np.random.Generator, count: int) -> np.ndarray:
    psi = rng.normal(size=(count, 2**N)) + 1j * rng.normal(size=(count, 2**N))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


def _fold(aggregator: Aggregator, per_step: list[np.ndarray], dense: bool) -> Aggregator:
    for step, psi in enumerate(per_step):
        if dense:
            aggregator.fold_densities(step, psi[:, :, None] * psi.conj()[:, None, :])
        else:
            aggregator.fold_states(step, psi)
    return aggregator


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(min_value=2, max_value=40),
    cut=st.floats(min_value=0.05, max_value=0.95),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    density=st.sampled_from(["full", "reduced", "none"]),
    dense=st.booleans(),
)
def test_merge_of_a_split_equals_folding_the_union(total, cut, seed, density, dense):
    rng = np.random.default_rng(seed)
    per_step = [_states(rng, total) for _ in range(STEPS)]
    keep = (0, 2) if density == "reduced" else None
    split = max(1, min(total - 1, int(total * cut)))
    union = _fold(Aggregator(N, STEPS, density, keep), per_step, dense)
    left = _fold(Aggregator(N, STEPS, density, keep), [s[:split] for s in per_step], dense)
    right = _fold(Aggregator(N, STEPS, density, keep), [s[split:] for s in per_step], dense)
    merged = left.merge(right)
    assert np.array_equal(merged.count, union.count)
    assert np.max(np.abs(merged.probabilities() - union.probabilities())) <= 1e-12
    assert np.max(np.abs(merged.z_mean() - union.z_mean())) <= 1e-12
    assert np.max(np.abs(merged.z_stderr() - union.z_stderr())) <= 1e-12
    if density != "none":
        assert np.max(np.abs(merged.rho() - union.rho())) <= 1e-12


def test_merge_refuses_sums_of_another_shape():
    try:
        Aggregator(2, 1).merge(Aggregator(3, 1))
    except ValueError as exc:
        assert "cannot merge" in str(exc)
    else:
        raise AssertionError("merge of 2- and 3-qubit sums was accepted")


def test_from_state_round_trips_the_sums():
    rng = np.random.default_rng(5)
    original = _fold(Aggregator(N, STEPS), [_states(rng, 7) for _ in range(STEPS)], False)
    copy = Aggregator.from_state(original.state(), N, STEPS)
    assert np.array_equal(copy.rho(), original.rho()) and copy.folded == 7


def test_errors_keep_their_fields_through_pickling():
    circuit = pickle.loads(pickle.dumps(CircuitError("bad.qasm:3: oops", file="bad.qasm", line=3)))
    assert (str(circuit), circuit.file, circuit.line) == ("bad.qasm:3: oops", "bad.qasm", 3)
    assert isinstance(circuit, InputError) and circuit.exit_code == 2
    full = pickle.loads(pickle.dumps(ArenaFull("no room for 4 KiB", needed_bytes=4096)))
    assert (str(full), full.needed_bytes, full.errno, full.exit_code) == (
        "no room for 4 KiB",
        4096,
        28,
        3,
    )
