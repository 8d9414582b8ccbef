"""The one module that touches Aer's private API (and the one private Qiskit method Aer's
own circuits are built with): every other module calls the named functions here.

noisefs runs Aer's own steps where its public API has none: a job's raw output before it
is formatted and its formatting (to batch a managed job and merge the batches), Aer's
conversion of parameter binds and of an integer option (so a value means here what it
means to Aer), a save instruction's subtype (to save per shot what the user saves as an
average), a ``NoiseModel``'s tables (to record and rebuild a user's model in a fixed
order) and ``QuantumCircuit._append`` (an instruction appended as it is, without the
checks ``append`` repeats for every gate of a circuit already checked). When an Aer or
Qiskit release renames one of these, this module is the only place to change.

No heavy library is imported at module level: the modules that call these functions
already hold the objects they take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


def execute_circuits_job(
    backend: Any, circuits: list, parameter_binds: Any, options: dict, job_id: str
) -> dict:
    """Aer's raw output of one job (``AerBackend._execute_circuits_job``, unformatted)."""
    return backend._execute_circuits_job(
        circuits, parameter_binds, dict(options), job_id=job_id, format_result=False
    )


def format_results(backend: Any, output: dict) -> Any:
    """``output`` formatted into a ``qiskit.result.Result`` as ``backend``'s class formats
    its own (``AerBackend._format_results``)."""
    return type(backend)._format_results(output)


def converted_binds(
    backend: Any, circuits: list, parameter_binds: Any, run_options: dict
) -> list[list]:
    """Aer's own conversion of ``parameter_binds``: the circuits as Aer compiles them
    (``AerBackend._compile``), then ``AerBackend._convert_binds`` on them, one table per
    circuit (only the parameters a circuit has). Raises what Aer raises."""
    compiled, _ = backend._compile(list(circuits), **run_options)
    return backend._convert_binds(compiled, parameter_binds, [None] * len(compiled))


def validate_option(name: str, value: object) -> object:
    """Aer's own check and cast of a configuration option (``aer_compiler._validate_option``)."""
    # lazy: qiskit_aer's compiler loads with the first managed job, not with this module
    from qiskit_aer.backends.aer_compiler import _validate_option

    return _validate_option(name, value)


def save_subtype(op: Any) -> str:
    """A save instruction's subtype (``"single"``, ``"list"``, ``"c_average"``, ...)."""
    return op._subtype


def set_save_subtype(op: Any, subtype: str) -> None:
    """Set the subtype of ``op`` (a save instruction of noisefs's own, a copy)."""
    op._subtype = subtype


class NoiseTables(NamedTuple):
    """A ``NoiseModel``'s errors as its private tables hold them."""

    default_quantum: dict  # instruction -> QuantumError on every qubit
    local_quantum: dict  # instruction -> {qubits: QuantumError}
    default_readout: Any  # ReadoutError on every qubit, or None
    local_readout: dict  # qubits -> ReadoutError
    custom_passes: int  # number of custom noise passes


def noise_tables(model: Any) -> NoiseTables:
    """The tables of ``model`` (a ``qiskit_aer.noise.NoiseModel``)."""
    return NoiseTables(
        model._default_quantum_errors,
        model._local_quantum_errors,
        model._default_readout_error,
        model._local_readout_errors,
        len(model._custom_noise_passes),
    )


def unchecked_append(circuit: Any) -> Callable[[Any], Any]:
    """``circuit``'s append of one ``CircuitInstruction`` as it is
    (``QuantumCircuit._append``): for copying instructions of a circuit already checked."""
    return circuit._append
