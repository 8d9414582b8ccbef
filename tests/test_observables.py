"""Observables: every operator form, folded per trajectory with its standard error, equal to
Aer's own ``save_expectation_value`` over the same shots (the oracle) at every snapshot."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from qiskit.quantum_info import (
    DensityMatrix,
    Pauli,
    SparsePauliOp,
    Statevector,
    random_density_matrix,
    random_statevector,
)

import noisefs
from noisefs.errors import InputError
from noisefs.observables import ObservableSet, load_observables_file, parse_observables
from noisefs.oracle import aer_reference_expectations, aer_reference_steps
from noisefs.result import Result
from tests import circuits
from tests.test_cli_run import _mtime, _wait_for, noisefs_cli

FORMS = {
    "dense": "ZIX",
    "sparse": "Z0 Z2",
    "sum": "0.5*Z0 Z1 - 1.2*X0 + 0.3*Y1 Y2",
    "exp": "1e-3*X1 - 2.5E-1*Y0",
    "pauli": Pauli("-YXZ"),
    "sparse_op": SparsePauliOp(["XYZ", "ZZX", "III"], [0.3, -0.7, 0.25]),
}


# -- the operator forms, against qiskit.quantum_info (an independent computation) ----------


def test_every_form_equals_qiskit_on_random_states_and_densities():
    observables = ObservableSet(3, parse_observables(FORMS))
    ops = observables.sparse_pauli_ops()
    states = np.stack([random_statevector(8, seed=s).data for s in range(6)])
    got = observables.from_states(states, np.abs(states) ** 2)
    want = [[Statevector(s).expectation_value(op).real for op in ops] for s in states]
    assert np.abs(got - np.array(want)).max() < 1e-12
    rhos = np.stack([random_density_matrix(8, seed=s).data for s in range(4)])
    got = observables.from_densities(rhos)
    want = [[DensityMatrix(r).expectation_value(op).real for op in ops] for r in rhos]
    assert np.abs(got - np.array(want)).max() < 1e-12


def test_the_forms_read_as_written():
    (dense,) = parse_observables("ZZIII")  # Qiskit order: the rightmost letter is qubit 0
    assert [t.factors for t in dense.terms] == [((3, "Z"), (4, "Z"))]
    (total,) = parse_observables("0.5*Z0 Z1 - 1.2*X0")
    assert [(t.coeff, t.label()) for t in total.terms] == [(0.5, "Z0 Z1"), (-1.2, "X0")]
    assert total.name == "0.5*Z0 Z1 - 1.2*X0"
    named = parse_observables({"energy": "Z0 Z1 + X0"})
    assert named[0].name == "energy" and len(named[0].terms) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Q0", "cannot read"),
        ("Z0 Z0", "twice"),
        ("1j*Z0", "cannot read"),
        ("", "no Pauli term"),
        ("0.5*", "no Pauli label"),
        (SparsePauliOp(["X"], [1j]), "not Hermitian"),
        (Pauli("iX"), "not Hermitian"),
        (["Z0", "Z0"], "given twice"),
        (3.5, "not float"),
    ],
)
def test_bad_operators_are_input_errors(value, message):
    with pytest.raises(InputError, match=message):
        parse_observables(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("Z5", "acts on qubit 5"), ("ZZZ", "3 Pauli letters"), (SparsePauliOp("XXX"), "3 Pauli")],
)
def test_operators_that_do_not_fit_the_circuit_are_input_errors(value, message):
    with pytest.raises(InputError, match=message):
        ObservableSet(2, parse_observables(value))


def test_observables_files_json_and_toml(tmp_path):
    (tmp_path / "o.json").write_text(json.dumps({"zz": "Z0 Z1", "x": "X0"}))
    (tmp_path / "o.toml").write_text('zz = "Z0 Z1"\nx = "X0"\n')
    from_json = load_observables_file(tmp_path / "o.json")
    assert from_json == load_observables_file(tmp_path / "o.toml")
    assert [o.name for o in from_json] == ["zz", "x"]
    (tmp_path / "bad.json").write_text('{"zz": 3}')
    with pytest.raises(InputError, match="bad.json"):
        load_observables_file(tmp_path / "bad.json")


# -- runs against the oracle ------------------------------------------------------------------

QUBITS = {"QFT4": 4, "MIDCIRCUIT2": 3}


@pytest.mark.parametrize("store", ["factored", "dense"])
@pytest.mark.parametrize("name", ["QFT4", "MIDCIRCUIT2"])
def test_a_run_equals_aers_expectation_values_at_every_step(run_kwargs, store, name):
    text = getattr(circuits, name)
    result = noisefs.run(
        text, trajectories=150, seed=5, batch=37, store=store, snapshots="every:3",
        observables={"zz": "Z0 Z1", "x0": "X0", "mix": "0.5*Z0 Z1 - 1.2*X0 + 0.3*Y0 Y1",
                     "op": SparsePauliOp("Y" + "I" * (QUBITS[name] - 2) + "X")},
        quiet=True, **run_kwargs,
    )  # fmt: skip
    assert result.observables.shape == (len(result.steps), 4)
    want = aer_reference_expectations(result.meta, result.steps)
    assert np.abs(result.observables - want).max() <= 1e-8
    # the spread is the sample standard error of the per-trajectory values: positive where
    # the trajectories differ, and the ⟨Z⟩ path agrees with a Z observable
    assert np.all(result.observables_stderr[-1] > 0)
    mean, stderr = result.expectation("x0")
    assert (mean, stderr) == (result.observables[-1, 1], result.observables_stderr[-1, 1])


def test_a_z_observable_equals_the_z_mean_and_its_stderr(run_kwargs):
    result = noisefs.run(
        circuits.GHZ4, trajectories=120, seed=2, observables=["Z2"], quiet=True, **run_kwargs
    )
    assert np.allclose(result.observables[:, 0], result.z_mean[:, 2], atol=1e-12)
    assert np.allclose(result.observables_stderr[:, 0], result.z_stderr[:, 2], atol=1e-12)


def test_spill_and_the_file_keep_the_observables(tmp_path, arena_root):
    out = tmp_path / "r.npz"
    result = noisefs.run(
        circuits.QFT4, trajectories=384, seed=9, batch=64, store="dense",
        observables={"zz": "Z0 Z1"}, arena=str(arena_root), quota="1MiB",
        spill=str(tmp_path / "spill"), spill_quota="300KiB", output=out, quiet=True,
    )  # fmt: skip
    assert result.meta["arena"]["spilled_files"] > 0
    loaded = Result.load(out)
    assert list(loaded.observable_names) == ["zz"]
    assert np.array_equal(loaded.observables, result.observables)
    want = aer_reference_expectations(loaded.meta, loaded.steps)
    assert np.abs(loaded.observables - want).max() <= 1e-8


def test_the_cli_takes_repeated_observables_and_a_file_and_inspect_shows_them(tmp_path, arena_root):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    (tmp_path / "o.toml").write_text('parity = "Z0 Z1 Z2 Z3"\n')
    out = tmp_path / "ghz.npz"
    proc = noisefs_cli(
        "run", path, "-k", 80, "--seed", 4, "-o", out, "--quiet", "--arena", arena_root,
        "--spill", tmp_path / "spill", "--observable", "XXXX", "--observable", "Z0 Z1",
        "--observables", tmp_path / "o.toml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = Result.load(out)
    assert list(result.observable_names) == ["XXXX", "Z0 Z1", "parity"]
    assert (
        np.abs(result.observables - aer_reference_expectations(result.meta, result.steps)).max()
        <= 1e-8
    )
    shown = noisefs_cli("inspect", out)
    assert shown.returncode == 0 and "parity" in shown.stdout and "XXXX" in shown.stdout
    info = json.loads(noisefs_cli("inspect", out, "--json").stdout)
    assert set(info["snapshots"][-1]["observables"]) == {"XXXX", "Z0 Z1", "parity"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--observable", "Z9"], "acts on qubit 9"),
        (["--observable", "Q1"], "cannot read"),
        (["--observable", "ZZ"], "2 Pauli letters"),
        (["--observables", "/nonexistent/o.json"], "cannot read the observables file"),
    ],
)
def test_bad_observables_on_the_cli_are_one_line_exit_2(tmp_path, arena_root, args, message):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    proc = noisefs_cli("run", path, "-k", 4, "--quiet", "--arena", arena_root, *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "ghz.noisefs.npz").exists()


def test_target_tol_waits_for_the_observables_too(run_kwargs):
    # a Bell pair under depolarizing noise alone (zero gate times: no relaxation): every
    # Pauli error keeps ⟨Z_q⟩ = 0 in each trajectory (no spread: the Z's meet the tolerance
    # at once), while X0 X1 flips between +1 and -1 from one trajectory to the next
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0], q[1];\n'
    common = dict(trajectories=3000, seed=3, target_tol=0.03, batch=20, p2=0.3, time_1q=0,
                  time_2q=0, quiet=True)  # fmt: skip
    alone = noisefs.run(text, **common, **run_kwargs)
    watched = noisefs.run(text, observables=["X0 X1"], **common, **run_kwargs)
    assert alone.meta["target_reached"] and watched.meta["target_reached"]
    assert 2 * alone.trajectories < watched.trajectories < 3000, (alone, watched)
    assert watched.observables_stderr[-1, 0] <= 0.03 and alone.z_stderr.max() < 1e-12


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_exact_observables(tmp_path, arena_root):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    out = tmp_path / "qft.npz"
    checkpoint = tmp_path / "qft.npz.ckpt.npz"
    args = [
        "run", path, "-k", 3000, "--seed", 77, "--batch", 16, "-o", out, "--quiet",
        "--checkpoint-interval", "0.2", "--snapshots", "every:4", "--observable", "X0 Y1",
        "--observable", "0.5*Z0 Z1 - Z3", "--arena", arena_root, "--spill", tmp_path / "spill",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_for(checkpoint.exists), "no checkpoint appeared"
        first = _mtime(checkpoint)
        assert _wait_for(lambda: _mtime(checkpoint) not in (None, first)), "no 2nd checkpoint"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and not out.exists()
    resumed = noisefs_cli(*args, "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = Result.load(out)
    assert result.trajectories == 3000
    assert (
        np.abs(result.observables - aer_reference_expectations(result.meta, result.steps)).max()
        <= 1e-8
    )
    assert np.abs(result.rho - aer_reference_steps(result.meta, result.steps)).max() <= 1e-8


@pytest.mark.slow
def test_worker_processes_fold_the_observables_exactly(tmp_path, arena_root):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    out = tmp_path / "w.npz"
    proc = noisefs_cli(
        "run", path, "-k", 200, "--seed", 8, "--batch", 20, "--workers", 2, "-o", out,
        "--quiet", "--arena", arena_root, "--spill", tmp_path / "spill",
        "--observable", "Y0 X2", "--observable", "ZZZZ",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = Result.load(out)
    assert (
        np.abs(result.observables - aer_reference_expectations(result.meta, result.steps)).max()
        <= 1e-8
    )


def test_without_probabilities_nothing_of_size_4n_or_2n_is_kept(tmp_path, run_kwargs):
    out = tmp_path / "r.npz"
    result = noisefs.run(
        circuits.QFT4, trajectories=60, seed=6, max_dm_qubits=2, no_probabilities=True,
        observables=["Z0 Z1", "X3"], output=out, quiet=True, **run_kwargs,
    )  # fmt: skip
    assert result.rho is None and result.probabilities is None
    with np.load(out) as data:
        assert "probabilities" not in data.files and "rho" not in data.files
    loaded = Result.load(out)
    assert loaded.probabilities is None and loaded.z_mean.shape == (len(loaded.steps), 4)
    want = aer_reference_expectations(loaded.meta, loaded.steps)
    assert np.abs(loaded.observables - want).max() <= 1e-8
    shown = noisefs_cli("inspect", out)
    assert shown.returncode == 0, shown.stderr
