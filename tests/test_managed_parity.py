"""noisefs.managed against plain Aer, side by side on real Aer: a job inside a scope is batched
with the unbatched job's results or passed through whole; where Aer rejects a job, the wrapped
job raises Aer's own exception (same type, same message, at the same call)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from math import pi

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.result import Result
from qiskit_aer import AerSimulator

from noisefs.aerscope import managed
from tests.test_managed import averaged_rho, noise_model


@dataclass
class Outcome:
    """What a ``backend.run`` call gave: ``where`` is ``ok``, or the call that raised
    (``run`` or ``result``)."""

    where: str
    result: Result | None = None
    error: BaseException | None = None


def outcome(call: Callable) -> Outcome:
    try:
        job = call()
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        return Outcome("run", error=exc)
    try:
        return Outcome("ok", result=job.result())
    except Exception as exc:  # noqa: BLE001
        return Outcome("result", error=exc)


def message(exc: BaseException) -> str:
    """The exception's message without object addresses (pybind11 prints its config's)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc))


def side_by_side(sim, circuits, binds, scope_kwargs, batch=4, **run_options):
    """(plain Aer's outcome, the managed outcome) of the same call."""
    plain = outcome(lambda: sim.run(circuits, parameter_binds=binds, **run_options))
    with managed(batch=batch, quiet=True, **scope_kwargs):
        wrapped = outcome(lambda: sim.run(circuits, parameter_binds=binds, **run_options))
    return plain, wrapped


def assert_same_outcome(plain: Outcome, wrapped: Outcome) -> None:
    """Both raised the same exception at the same call, or both gave the same counts, memory,
    shots and seeds (saves: see the tests that compare them)."""
    if plain.error is not None or wrapped.error is not None:
        assert (wrapped.where, type(wrapped.error)) == (plain.where, type(plain.error)), (
            plain.error,
            wrapped.error,
        )
        assert message(wrapped.error) == message(plain.error)
        return
    a, b = plain.result, wrapped.result
    assert b.success == a.success and len(b.results) == len(a.results)
    for ra, rb in zip(a.results, b.results, strict=True):
        assert (rb.shots, rb.seed_simulator, rb.success) == (
            ra.shots,
            ra.seed_simulator,
            ra.success,
        )
        da, db = ra.data.to_dict(), rb.data.to_dict()
        assert db.get("counts") == da.get("counts")
        assert db.get("memory") == da.get("memory")


def mode(out: Outcome) -> str:
    return out.result.metadata["noisefs"]["mode"]


@pytest.fixture
def scope_kwargs(arena_root, tmp_path):
    return {"root": arena_root, "spill_dir": tmp_path / "spill", "quota": "8MiB"}


def per_shot_circuit() -> QuantumCircuit:
    """Shot by shot in Aer (a gate on a measured qubit after its measurement), with noise."""
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.rx(0.4, 0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


# -- defect 1: shot branching -------------------------------------------------------------


def test_shot_branching_enable_passes_through(scope_kwargs):
    """Aer's shot branching is not reproducible from its seed (three runs, three different
    counts): the job is Aer's own, run whole, with the reason recorded."""
    for sim, options in [
        (AerSimulator(noise_model=noise_model()), {"shot_branching_enable": True}),
        (AerSimulator(noise_model=noise_model(), shot_branching_enable=True), {}),
    ]:
        plain, wrapped = side_by_side(
            sim, per_shot_circuit(), None, scope_kwargs, shots=64, seed_simulator=5, **options
        )
        assert plain.where == wrapped.where == "ok"
        assert mode(wrapped) == "passthrough"
        assert "shot_branching_enable" in wrapped.result.metadata["noisefs"]["reason"]
        got = wrapped.result.results[0]
        assert got.metadata["shot_branching_enabled"] and got.shots == 64
        assert sum(wrapped.result.get_counts().values()) == 64


# -- defect 2: shots and seeds as Aer reads them ------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Aer's own, for implicit casts
@pytest.mark.parametrize(
    "shots", [300.0, 30.7, np.int64(30), np.uint64(30), np.float32(30), "30", True], ids=repr
)
def test_shots_of_every_type_aer_accepts_are_batched(scope_kwargs, shots):
    sim = AerSimulator(noise_model=noise_model())
    plain, wrapped = side_by_side(
        sim, per_shot_circuit(), None, scope_kwargs, shots=shots, seed_simulator=3, memory=True
    )
    assert_same_outcome(plain, wrapped)
    assert mode(wrapped) == "batched"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "seed", [-1, -5, 2**63 - 3, -(2**63), 1.5, np.uint64(5), np.int64(-2), "7", True], ids=repr
)
def test_seeds_of_every_type_aer_accepts_are_batched(scope_kwargs, seed):
    """Aer seeds modulo 2^64 (-1 is a seed like any other, not 'draw one'); batches near
    the int64 bounds wrap as Aer's own arithmetic does."""
    sim = AerSimulator(noise_model=noise_model())
    plain, wrapped = side_by_side(
        sim, [per_shot_circuit()] * 2, None, scope_kwargs, shots=20, seed_simulator=seed,
        memory=True,
    )  # fmt: skip
    assert_same_outcome(plain, wrapped)
    assert mode(wrapped) == "batched"
    assert wrapped.result.metadata["noisefs"]["seed_drawn"] is False


def test_backend_options_are_read_as_aer_reads_them(scope_kwargs):
    """``None`` run options are unset (Aer's rule): the backend's shots and seed apply."""
    sim = AerSimulator(noise_model=noise_model(), shots=30, seed_simulator=-3)
    for options in ({}, {"shots": None, "seed_simulator": None}):
        plain, wrapped = side_by_side(
            sim, per_shot_circuit(), None, scope_kwargs, memory=True, **options
        )
        assert_same_outcome(plain, wrapped)
        note = wrapped.result.metadata["noisefs"]
        assert (note["mode"], note["shots"], note["seed_simulator"]) == ("batched", 30, -3)


def test_zero_shots_run_as_aer_runs_them(scope_kwargs):
    sim = AerSimulator(noise_model=noise_model())
    qc = per_shot_circuit()
    qc.save_density_matrix(label="dm", pershot=True)
    plain, wrapped = side_by_side(sim, qc, None, scope_kwargs, shots=0, seed_simulator=1)
    assert_same_outcome(plain, wrapped)
    assert mode(wrapped) == "passthrough"
    assert wrapped.result.data(0).keys() == plain.result.data(0).keys()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Aer's own, for 1e20
@pytest.mark.parametrize(
    "shots", [10**30, 2**64, -1, np.int64(-3), 1e20, float("nan"), "x"], ids=repr
)
def test_shots_aer_rejects_raise_aers_error_at_once(scope_kwargs, shots):
    sim = AerSimulator(noise_model=noise_model())
    started = time.monotonic()
    plain, wrapped = side_by_side(sim, per_shot_circuit(), None, scope_kwargs, shots=shots)
    assert plain.where == "result" and isinstance(plain.error, TypeError)
    assert_same_outcome(plain, wrapped)
    assert time.monotonic() - started < 10  # no batch plan built as a list, no hang


def test_shots_past_aers_int_range_are_left_to_aer(scope_kwargs):
    """Aer counts shots in a C int: 2^40 runs as no shot at all (success, no counts). Such a
    job is Aer's own, not 2^32 batches."""
    sim = AerSimulator(noise_model=noise_model())
    plain, wrapped = side_by_side(
        sim, per_shot_circuit(), None, scope_kwargs, shots=2**40, seed_simulator=2
    )
    assert_same_outcome(plain, wrapped)
    assert mode(wrapped) == "passthrough"


# -- defect 3: parameter binds Aer rejects --------------------------------------------------


def parametrised(theta: Parameter) -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.rx(theta, 0)
    qc.measure(0, 0)
    qc.cx(0, 1)
    qc.measure(1, 1)
    return qc


THETA, PHI = Parameter("θ"), Parameter("φ")
BAD_BINDS = {
    "too few binds": ([parametrised(THETA)] * 2, [{THETA: [0.1, 0.2]}]),
    "too many binds": (parametrised(THETA), [{THETA: [0.1, 0.2]}, {THETA: [1.0]}]),
    "a string": (parametrised(THETA), ["x"]),
    "a dict, not a list": (parametrised(THETA), {THETA: [0.1, 0.2]}),
    "a list of Parameters": (parametrised(THETA), [THETA]),
    "a scalar value": (parametrised(THETA), [{THETA: 0.5}]),
    "values not numbers": (parametrised(THETA), [{THETA: ["a", "b"]}]),
    "an array of binds": (parametrised(THETA), np.array([{THETA: [0.1]}, {THETA: [0.2]}])),
}


@pytest.mark.parametrize("case", sorted(BAD_BINDS))
def test_parameter_binds_aer_rejects_raise_aers_error(scope_kwargs, case):
    circuits, binds = BAD_BINDS[case]
    sim = AerSimulator(noise_model=noise_model())
    plain, wrapped = side_by_side(sim, circuits, binds, scope_kwargs, shots=16, seed_simulator=1)
    assert plain.error is not None
    assert_same_outcome(plain, wrapped)


@pytest.mark.parametrize("runtime", [False, True])
def test_qiskit_aer_run_path_multiple_circuits_mismatch_length(scope_kwargs, runtime):
    """qiskit-aer's test_run_path_multiple_circuits_mismatch_length (test_parameterized_circuit
    and, with runtime binding, test_runtime_parameterization) inside a scope."""
    circuit = QuantumCircuit(2)
    theta = Parameter("theta")
    circuit.rx(theta, 0)
    circuit.cx(0, 1)
    circuit.measure_all()
    parameter_binds = [{theta: [0, pi, 2 * pi]}]
    extra = {"shot_branching_enable": False, "runtime_parameter_bind_enable": True}
    plain, wrapped = side_by_side(
        AerSimulator(), [circuit] * 3, [parameter_binds], scope_kwargs, shots=1000,
        **(extra if runtime else {}),
    )  # fmt: skip
    assert plain.where == "result" and type(plain.error).__name__ == "AerError"
    assert_same_outcome(plain, wrapped)


# -- defect 4: experiments counted as Aer counts them --------------------------------------


def mid_circuit(angle) -> QuantumCircuit:
    """A mid-circuit measurement, a per-shot density matrix, ``angle`` (a number or a
    Parameter) on qubit 1."""
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.rx(angle, 1)
    qc.save_density_matrix(label="dm", pershot=True)
    qc.measure(1, 1)
    return qc


def with_phase(angle, phase) -> QuantumCircuit:
    qc = mid_circuit(angle)
    qc.global_phase = phase
    return qc


def two_parameters() -> QuantumCircuit:
    qc = mid_circuit(THETA)
    qc.rz(PHI, 0)
    return qc


COUNTED = {
    "binds naming no parameter of the circuits": (
        [mid_circuit(0.1), mid_circuit(0.2)], [{THETA: [0.1, 0.2]}, {THETA: [0.3, 0.4]}]
    ),
    "one circuit with the parameter, one without": (
        [mid_circuit(THETA), mid_circuit(0.2)], [{THETA: [0.1, 0.2]}, {THETA: [0.3, 0.4]}]
    ),
    "a parameter the circuit lacks, lists of unequal length": (
        [mid_circuit(THETA)], [{THETA: [0.1], PHI: [0.2, 0.3]}]
    ),
    "the first parameterization decides (global phase)": (
        [with_phase(THETA, PHI)], [{PHI: [0.1, 0.2, 0.3], THETA: [0.5, 0.6, 0.7]}]
    ),
    "a circuit with no values": (
        [mid_circuit(THETA), mid_circuit(THETA)], [{THETA: []}, {THETA: [0.3, 0.4]}]
    ),
    "no experiment at all": ([mid_circuit(THETA)], [{THETA: []}]),
    "ragged lists Aer refuses": ([two_parameters()], [{THETA: [0.1, 0.2], PHI: [1.0]}]),
    "ragged lists Aer runs": ([two_parameters()], [{THETA: [0.1], PHI: [1.0, 2.0]}]),
}  # fmt: skip


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("case", sorted(COUNTED))
def test_experiments_are_counted_as_aer_counts_them(scope_kwargs, case, runtime):
    circuits, binds = COUNTED[case]
    sim = AerSimulator(noise_model=noise_model())
    plain, wrapped = side_by_side(
        sim, circuits, binds, scope_kwargs, shots=12, seed_simulator=4, memory=True,
        runtime_parameter_bind_enable=runtime,
    )  # fmt: skip
    assert_same_outcome(plain, wrapped)
    if plain.result is None or not plain.result.success:
        return
    ref, got = plain.result, wrapped.result
    if mode(wrapped) == "batched":  # per-shot states come back averaged
        for k in range(len(ref.results)):
            np.testing.assert_allclose(
                np.asarray(got.data(k)["dm"]), averaged_rho(ref.data(k)["dm"]), atol=1e-8
            )
