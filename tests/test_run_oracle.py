"""End-to-end runs judged by the contract's oracle (docs/contract.md): Aer's own average to 1e-8, at every snapshot."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import qasm2
from qiskit.circuit.random import random_circuit

import noisefs
from noisefs.arena import Arena
from noisefs.oracle import aer_reference, aer_reference_steps
from noisefs.pipeline.loop import RunLoop
from tests import circuits

TOL = 1e-8


def assert_matches_aer(result, every_step: bool = True) -> None:
    reference = aer_reference(result.meta)
    assert np.max(np.abs(result.rho[-1] - reference)) <= TOL
    assert np.max(np.abs(result.probabilities[-1] - np.diag(reference).real)) <= TOL
    if every_step:
        per_step = aer_reference_steps(result.meta, result.steps)
        assert np.max(np.abs(result.rho - per_step)) <= TOL


@pytest.mark.parametrize(
    "name,text",
    [
        ("ghz4", circuits.GHZ4),
        ("qft4", circuits.QFT4),
        ("mid2", circuits.MIDCIRCUIT2),
        ("q3", circuits.QASM3),
    ],
)
def test_own_circuits_match_aer(tmp_path, run_kwargs, name, text):
    path = circuits.write(tmp_path, f"{name}.qasm", text)
    result = noisefs.run(
        path,
        trajectories=48,
        seed=11,
        batch=16,
        p1=0.02,
        p2=0.05,
        t1="20us",
        t2="30us",
        **run_kwargs,
    )
    assert result.trajectories == 48
    assert result.rho.shape == (len(result.steps), 2**result.num_qubits, 2**result.num_qubits)
    assert_matches_aer(result)
    # a real mixed state, not a trivial one
    assert np.all(np.abs(np.trace(result.rho, axis1=1, axis2=2) - 1) < 1e-12)
    assert result.purity()[-1] < 0.999


def test_random_circuit_matches_aer(tmp_path, run_kwargs):
    qc = random_circuit(4, 6, max_operands=2, seed=5)
    path = circuits.write(tmp_path, "random.qasm", qasm2.dumps(qc))
    result = noisefs.run(path, trajectories=40, seed=3, batch=9, snapshots="layers", **run_kwargs)
    assert_matches_aer(result)


def test_identical_across_batch_sizes_and_workers(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    common = dict(trajectories=30, seed=123, p2=0.1, **run_kwargs)
    base = noisefs.run(path, batch=30, **common)
    for variant in (dict(batch=1), dict(batch=7), dict(batch=4, workers=2)):
        other = noisefs.run(path, **variant, **common)
        assert np.max(np.abs(other.rho - base.rho)) <= TOL, variant
        assert np.max(np.abs(other.z_stderr - base.z_stderr)) <= TOL, variant


def test_dense_equals_factored(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "mid.qasm", circuits.MIDCIRCUIT2)
    factored = noisefs.run(path, trajectories=24, seed=9, batch=8, **run_kwargs)
    dense = noisefs.run(path, trajectories=24, seed=9, batch=8, store="dense", **run_kwargs)
    assert np.max(np.abs(dense.rho - factored.rho)) <= TOL
    assert np.max(np.abs(dense.z_mean - factored.z_mean)) <= TOL
    assert np.max(np.abs(dense.z_stderr - factored.z_stderr)) <= TOL


def test_tiny_quota_forces_spill_and_waiting_and_stays_exact(tmp_path, arena_root):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    spill = tmp_path / "spill"
    # dense snapshots of 64 trajectories are 256 KiB each (+ a header page): a 1 MiB quota,
    # most of it taken by the ledger, holds one; a 300 KiB spill bound holds one more, so
    # every other put must wait for the aggregator to release one
    result = noisefs.run(
        path, trajectories=384, seed=5, batch=64, store="dense", arena=str(arena_root), quota="1MiB",
        spill=str(spill), spill_quota="300KiB",
    )  # fmt: skip
    arena = result.meta["arena"]
    assert arena["spilled_files"] > 0
    assert arena["peak_bytes"] <= 1 << 20
    assert_matches_aer(result, every_step=False)
    assert not [p for p in spill.rglob("*") if p.is_file()]


def test_reduced_density_matrix_is_partial_trace(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    full = noisefs.run(path, trajectories=20, seed=1, **run_kwargs)
    reduced = noisefs.run(path, trajectories=20, seed=1, keep_qubits=[0, 2], **run_kwargs)
    rho = full.rho[-1].reshape([2] * 8)  # axes: q3 q2 q1 q0 | q3' q2' q1' q0'
    # trace out qubits 3 and 1; keep (q2, q0) as the (more, less) significant pair
    expected = np.einsum("aibjakbl->ijkl", rho).reshape(4, 4)
    assert np.max(np.abs(reduced.rho[-1] - expected)) <= TOL
    assert reduced.meta["density"] == "reduced"


def test_above_max_dm_qubits_keeps_probabilities_only(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    result = noisefs.run(
        path, trajectories=16, seed=2, max_dm_qubits=3, output=tmp_path / "o.npz", **run_kwargs
    )
    assert result.rho is None
    with np.load(tmp_path / "o.npz", allow_pickle=False) as data:
        assert "rho" not in data.files
    reference = aer_reference(result.meta)
    assert np.max(np.abs(result.probabilities[-1] - np.diag(reference).real)) <= TOL


def test_target_tol_stops_early_and_records_the_count(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    result = noisefs.run(path, trajectories=4000, seed=4, batch=32, target_tol=0.08, **run_kwargs)
    assert 32 <= result.trajectories < 4000
    assert np.all(result.z_stderr <= 0.08)
    assert result.meta["trajectories"] == result.trajectories
    assert result.meta["target_reached"] is True
    assert_matches_aer(result, every_step=False)


def test_target_tol_out_of_reach_runs_everything_and_says_so(tmp_path, run_kwargs, caplog):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    result = noisefs.run(path, trajectories=64, seed=4, batch=32, target_tol=1e-4, **run_kwargs)
    assert result.trajectories == 64
    assert result.meta["target_reached"] is False
    assert "--target-tol 0.0001 not reached" in caplog.text


def test_result_file_has_spec_keys_and_loads_without_pickle(tmp_path, run_kwargs):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "ghz.noisefs.npz"
    noisefs.run(path, trajectories=8, seed=1, output=out, **run_kwargs)
    with np.load(out, allow_pickle=False) as data:
        assert {
            "rho",
            "probabilities",
            "steps",
            "trajectories",
            "z_mean",
            "z_stderr",
            "meta",
        } <= set(data.files)
        assert data["rho"].dtype == np.complex128 and data["steps"].dtype == np.int64
        assert int(data["trajectories"]) == 8
        import json

        meta = json.loads(str(data["meta"]))
    for key in ("versions", "circuit_sha256", "executed_qasm", "num_qubits", "noise", "seed", "trajectories",
                "batch", "snapshots", "arena", "timing"):  # fmt: skip
        assert key in meta
    assert set(meta["noise"]) >= {
        "t1_s",
        "t2_s",
        "time_1q_s",
        "time_2q_s",
        "p1",
        "p2",
        "readout",
        "per_qubit",
    }
    assert set(meta["arena"]) >= {
        "quota_bytes",
        "max_files",
        "peak_bytes",
        "peak_files",
        "spilled_bytes",
        "spilled_files",
    }
    assert not (tmp_path / "ghz.noisefs.npz.ckpt.npz").exists()


def test_a_failed_release_neither_stops_nor_double_counts(tmp_path, run_kwargs, monkeypatch):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    release, calls = Arena.release, []

    def flaky(self, key):
        calls.append(key)
        if len(calls) == 5:
            raise OSError(5, "simulated EIO while freeing a snapshot")
        return release(self, key)

    monkeypatch.setattr(Arena, "release", flaky)
    result = noisefs.run(path, trajectories=80, seed=3, batch=10, **run_kwargs)
    monkeypatch.undo()
    assert result.trajectories == 80
    assert_matches_aer(result, every_step=True)
    with Arena.open_existing(run_kwargs["arena"]) as arena:
        assert arena.keys() == []  # the snapshot whose release failed was swept at the end


def test_target_tol_after_a_resume_with_gaps_folds_a_contiguous_set(
    tmp_path, run_kwargs, monkeypatch
):
    """A checkpoint may hold batches 0 and 4-7 but not 1-3 (workers finish out of order);
    stopping early must still fold 0..K'-1, the trajectories the result claims."""
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "gap.npz"
    run_loop = RunLoop.run

    def with_gaps_then_interrupt(self):
        for start, stop in ((10, 40), (80, 200)):  # so only batches 0 and 4-7 run
            self._submitted.add(start, stop)
        run_loop(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunLoop, "run", with_gaps_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        noisefs.run(path, trajectories=200, seed=3, batch=10, output=out, **run_kwargs)
    monkeypatch.undo()
    result = noisefs.run(
        path, trajectories=200, seed=3, batch=10, output=out, resume=True, target_tol=0.5,
        **run_kwargs,
    )  # fmt: skip
    assert result.trajectories == 80  # batches 0-7, nothing more, nothing less
    assert_matches_aer(result, every_step=True)
