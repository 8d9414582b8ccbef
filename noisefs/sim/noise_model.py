"""A user's own Aer ``NoiseModel`` as a run's noise, recorded in the result exactly.

Aer 0.18's ``NoiseModel.to_dict(serializable=True)`` does not round-trip through
``NoiseModel.from_dict`` (``ValueError`` from ``SuperOp``), and a model rebuilt from its
channels (``QuantumError(Kraus(...))``) samples other random numbers than the original. So a
model is recorded as what Aer samples from: each error's circuits (QPY, which is
deterministic and needs no pickle) and their probabilities, with the instruction names and
qubits it is attached to. A run simulates with the model rebuilt from that record, the same
one :func:`noisefs.oracle.aer_reference` rebuilds: the run and its oracle can never differ.

This is the one module that reads a ``NoiseModel``'s private tables: Aer has no public way
to list the errors of a model.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noisefs.errors import InputError, one_line

__all__ = ["KIND", "GivenNoise", "restricted_model"]

KIND = "noise_model"


def _qpy_text(circuits: list) -> str:
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(circuits, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _qpy_circuits(text: str) -> list:
    from qiskit import qpy

    return qpy.load(io.BytesIO(base64.b64decode(text.encode("ascii"))))


def _error_record(error, instructions: list[str], qubits: list[int] | None) -> dict:
    return {
        "instructions": instructions,
        "qubits": qubits,
        "probabilities": [float(p) for p in error.probabilities],
        "circuits": _qpy_text(list(error.circuits)),
    }


def _record(model) -> dict:
    """The record of ``model`` (see the module docstring)."""
    errors = []
    for name, error in sorted(model._default_quantum_errors.items()):
        errors.append(_error_record(error, [name], None))
    for name, by_qubits in sorted(model._local_quantum_errors.items()):
        for qubits, error in sorted(by_qubits.items()):
            errors.append(_error_record(error, [name], list(map(int, qubits))))
    readout = []
    if model._default_readout_error is not None:
        readout.append({"qubits": None, "probabilities": _matrix(model._default_readout_error)})
    for qubits, error in sorted(model._local_readout_errors.items()):
        readout.append({"qubits": list(map(int, qubits)), "probabilities": _matrix(error)})
    return {
        "kind": KIND,
        "basis_gates": sorted(model.basis_gates),
        "quantum_errors": errors,
        "readout_errors": readout,
        "delay_passes": len(model._custom_noise_passes),
    }


def _matrix(readout_error) -> list[list[float]]:
    return np.asarray(readout_error.probabilities, dtype=float).tolist()


def _rebuild(record: dict):
    from qiskit_aer.noise import NoiseModel, QuantumError, ReadoutError

    model = NoiseModel(basis_gates=list(record["basis_gates"]))
    for entry in record["quantum_errors"]:
        circuits = _qpy_circuits(entry["circuits"])
        error = QuantumError(list(zip(circuits, entry["probabilities"], strict=True)))
        if entry["qubits"] is None:
            model.add_all_qubit_quantum_error(error, entry["instructions"], warnings=False)
        else:
            model.add_quantum_error(error, entry["instructions"], entry["qubits"], warnings=False)
    for entry in record["readout_errors"]:
        error = ReadoutError(entry["probabilities"])
        if entry["qubits"] is None:
            model.add_all_qubit_readout_error(error, warnings=False)
        else:
            model.add_readout_error(error, entry["qubits"], warnings=False)
    return model


def restricted_model(model, physical: tuple[int, ...]):
    """``model`` on the qubits ``physical`` only, renumbered: qubit ``c`` of the result is
    qubit ``physical[c]`` of ``model`` (errors on other qubits are left out; all-qubit errors
    stay all-qubit). Custom noise passes are not carried over."""
    from qiskit_aer.noise import NoiseModel

    simulated = {p: c for c, p in enumerate(physical)}
    out = NoiseModel(basis_gates=sorted(model.basis_gates))
    for name, error in model._default_quantum_errors.items():
        out.add_all_qubit_quantum_error(error, name, warnings=False)
    for name, by_qubits in model._local_quantum_errors.items():
        for qubits, error in by_qubits.items():
            if all(q in simulated for q in qubits):
                out.add_quantum_error(error, name, [simulated[q] for q in qubits], warnings=False)
    if model._default_readout_error is not None:
        out.add_all_qubit_readout_error(model._default_readout_error, warnings=False)
    for qubits, error in model._local_readout_errors.items():
        if all(q in simulated for q in qubits):
            out.add_readout_error(error, [simulated[q] for q in qubits], warnings=False)
    return out


@dataclass(frozen=True)
class GivenNoise:
    """A run's noise from a user's ``qiskit_aer.noise.NoiseModel``: the circuit is
    translated to the model's basis gates and simulated with the model's own errors."""

    record: dict = field(repr=False)

    @classmethod
    def from_model(cls, model: object) -> GivenNoise:
        from qiskit_aer.noise import NoiseModel

        if not isinstance(model, NoiseModel):
            raise InputError(
                f"noise_model must be a qiskit_aer.noise.NoiseModel, not {type(model).__name__}"
            )
        try:
            record = _record(model)
            _rebuild(record)  # what cannot be rebuilt is refused now, not in the oracle
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"noise_model cannot be recorded exactly: {one_line(exc)}") from None
        return cls(record)

    @classmethod
    def from_meta(cls, meta: dict) -> GivenNoise:
        return cls(meta)

    @property
    def basis_gates(self) -> tuple[str, ...]:
        return tuple(self.record["basis_gates"])

    def validate(self, num_qubits: int) -> None:
        """Nothing to check against the qubit count: Aer applies no error to a qubit the
        model does not name, as for a plain Aer run."""

    def check_circuit(self, circuit: Any) -> None:
        """Refuse what the record cannot reproduce for this circuit: the relaxation of
        ``delay`` instructions that ``NoiseModel.from_backend`` adds as a custom pass."""
        if not self.record["delay_passes"]:
            return
        if any(inst.operation.name == "delay" for inst in circuit.data):
            raise InputError(
                "this noise model relaxes qubits during delay instructions (a custom noise "
                "pass of NoiseModel.from_backend), which cannot be recorded; remove the "
                "delays, or give the device itself with backend="
            )

    def model_for(self, num_qubits: int):
        """The Aer ``NoiseModel`` to simulate with (rebuilt from the record)."""
        return _rebuild(self.record)

    def to_meta(self) -> dict:
        return self.record
