"""``noisefs.run(..., noise_model=...)``: any Aer noise model, the circuit translated to its
basis, the model recorded in the result so that the oracle rebuilds it exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit_aer import AerSimulator
from qiskit_aer.noise import (
    NoiseModel,
    ReadoutError,
    amplitude_damping_error,
    depolarizing_error,
    pauli_error,
    thermal_relaxation_error,
)

import noisefs
from noisefs.errors import InputError
from noisefs.oracle import aer_reference_expectations, aer_reference_steps, executed_circuit
from noisefs.result import Result
from tests import circuits
from tests.test_cli_run import noisefs_cli


def user_model() -> NoiseModel:
    """Kraus (amplitude damping), Pauli, composed and readout errors, all-qubit and local,
    on a basis other than the rule's."""
    model = NoiseModel(basis_gates=["u", "cz", "id"])
    model.add_all_qubit_quantum_error(amplitude_damping_error(0.05), ["u"])
    model.add_quantum_error(pauli_error([("XX", 0.05), ("ZI", 0.05), ("II", 0.9)]), ["cz"], [0, 1])
    model.add_quantum_error(
        depolarizing_error(0.01, 1).compose(thermal_relaxation_error(20e-6, 30e-6, 1e-6)),
        ["u"],
        [3],
        warnings=False,
    )
    model.add_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]), [0])
    return model


@pytest.mark.parametrize("store", ["factored", "dense"])
def test_a_user_model_equals_plain_aer_with_that_model(run_kwargs, tmp_path, store):
    model = user_model()
    out = tmp_path / "r.npz"
    result = noisefs.run(
        circuits.QFT4, trajectories=150, seed=4, batch=33, store=store, noise_model=model,
        observables=["X0 Z1"], snapshots="every:4", output=out, quiet=True, **run_kwargs,
    )  # fmt: skip
    ops = {inst.operation.name for inst in executed_circuit(result.meta).data}
    assert ops <= {"u", "cz", "id", "barrier"} and "cz" in ops  # the model's basis
    # the oracle, from the result file alone (the model rebuilt from its record)
    loaded = Result.load(out)
    assert np.abs(loaded.rho - aer_reference_steps(loaded.meta, loaded.steps)).max() <= 1e-8
    want = aer_reference_expectations(loaded.meta, loaded.steps)
    assert np.abs(loaded.observables - want).max() <= 1e-8
    # and plain Aer with the user's own model object
    circuit = executed_circuit(result.meta)
    circuit.save_density_matrix(label="rho")
    plain = AerSimulator(method="statevector", noise_model=model).run(
        circuit, shots=150, seed_simulator=4
    )
    assert np.abs(np.asarray(plain.result().data(0)["rho"]) - result.rho[-1]).max() <= 1e-8


def test_the_record_is_json_and_names_each_error(run_kwargs):
    result = noisefs.run(
        circuits.GHZ4, trajectories=8, seed=1, noise_model=user_model(), quiet=True, **run_kwargs
    )
    record = json.loads(json.dumps(result.meta["noise"]))
    assert record["kind"] == "noise_model" and record["basis_gates"] == ["cz", "id", "u"]
    assert [(e["instructions"], e["qubits"]) for e in record["quantum_errors"]] == [
        (["u"], None),
        (["cz"], [0, 1]),
        (["u"], [3]),
    ]
    assert record["readout_errors"] == [{"qubits": [0], "probabilities": [[0.9, 0.1], [0.2, 0.8]]}]


def test_inspect_describes_a_user_model(run_kwargs, tmp_path):
    out = tmp_path / "r.npz"
    noisefs.run(
        circuits.GHZ4, trajectories=8, seed=1, noise_model=user_model(), output=out,
        quiet=True, **run_kwargs,
    )  # fmt: skip
    shown = noisefs_cli("inspect", out)
    assert shown.returncode == 0 and "an Aer NoiseModel: 3 gate error(s)" in shown.stdout


def test_a_model_and_rule_options_together_are_refused(run_kwargs):
    with pytest.raises(InputError, match="drop p1, t1"):
        noisefs.run(circuits.GHZ4, noise_model=user_model(), t1="40us", p1=0.1, **run_kwargs)


def test_not_a_noise_model_is_refused(run_kwargs):
    with pytest.raises(InputError, match="must be a qiskit_aer.noise.NoiseModel"):
        noisefs.run(circuits.GHZ4, noise_model={"p1": 0.1}, **run_kwargs)


def test_a_circuit_that_cannot_reach_the_models_basis_is_one_error(run_kwargs):
    model = NoiseModel(basis_gates=["rz", "sx"])  # no entangling gate
    with pytest.raises(InputError, match="cannot translate"):
        noisefs.run(circuits.GHZ4, noise_model=model, quiet=True, **run_kwargs)


def test_a_device_models_delay_relaxation_is_refused_where_it_would_act(run_kwargs):
    from qiskit import QuantumCircuit

    model = user_model()
    model.add_basis_gates(["delay"])
    # what NoiseModel.from_backend adds: relaxation during delays, as a custom pass
    from qiskit.circuit import Delay
    from qiskit_aer.noise.passes import RelaxationNoisePass

    model._custom_noise_passes.append(
        RelaxationNoisePass(t1s=[50e-6] * 2, t2s=[70e-6] * 2, dt=1e-9, op_types=Delay)
    )
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.delay(100, 0, unit="ns")
    with pytest.raises(InputError, match="delay"):
        noisefs.run(qc, noise_model=model, quiet=True, **run_kwargs)
    plain = QuantumCircuit(2)
    plain.h(0)
    assert noisefs.run(plain, noise_model=model, trajectories=4, quiet=True, **run_kwargs)
