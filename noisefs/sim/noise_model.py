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

from noisefs.aer_private import noise_tables
from noisefs.errors import InputError, one_line

__all__ = ["KIND", "GivenNoise", "restricted_model"]

KIND = "noise_model"


def _qpy_text(circuits: list) -> str:
    from qiskit import qpy  # lazy: qiskit, not with the options (the CLI's parser)

    buffer = io.BytesIO()
    qpy.dump(circuits, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _qpy_circuits(text: str) -> list:
    from qiskit import qpy  # lazy: qiskit, not with the options (the CLI's parser)

    return qpy.load(io.BytesIO(base64.b64decode(text.encode("ascii"))))


def _error_record(error, instructions: list[str], qubits: list[int] | None) -> dict:
    return {
        "instructions": instructions,
        "qubits": qubits,
        "probabilities": [float(p) for p in error.probabilities],
        "circuits": _qpy_text(list(error.circuits)),
    }


@dataclass(frozen=True)
class _Entry:
    """One error of a model: a ``QuantumError`` on ``instruction`` (``readout``: a
    ``ReadoutError``), on ``qubits`` or on every qubit (``None``)."""

    instruction: str | None  # None for a readout error
    qubits: tuple[int, ...] | None
    error: Any


def _entries(model) -> tuple[list[_Entry], int]:
    """Every error of ``model`` in a fixed order, and its number of custom noise passes:
    read through :func:`noisefs.aer_private.noise_tables`."""
    tables = noise_tables(model)
    entries = [_Entry(name, None, e) for name, e in sorted(tables.default_quantum.items())]
    for name, by_qubits in sorted(tables.local_quantum.items()):
        entries += [_Entry(name, tuple(map(int, q)), e) for q, e in sorted(by_qubits.items())]
    if tables.default_readout is not None:
        entries.append(_Entry(None, None, tables.default_readout))
    entries += [
        _Entry(None, tuple(map(int, q)), e) for q, e in sorted(tables.local_readout.items())
    ]
    return entries, tables.custom_passes


def _add(model, entry: _Entry) -> None:
    if entry.instruction is None and entry.qubits is None:
        model.add_all_qubit_readout_error(entry.error, warnings=False)
    elif entry.instruction is None:
        model.add_readout_error(entry.error, list(entry.qubits), warnings=False)
    elif entry.qubits is None:
        model.add_all_qubit_quantum_error(entry.error, entry.instruction, warnings=False)
    else:
        model.add_quantum_error(entry.error, entry.instruction, list(entry.qubits), warnings=False)


def _record(model) -> dict:
    """The record of ``model`` (see the module docstring)."""
    entries, passes = _entries(model)
    quantum = [e for e in entries if e.instruction is not None]
    return {
        "kind": KIND,
        "basis_gates": sorted(model.basis_gates),
        "quantum_errors": [
            _error_record(e.error, [e.instruction], None if e.qubits is None else list(e.qubits))
            for e in quantum
        ],
        "readout_errors": [
            {
                "qubits": None if e.qubits is None else list(e.qubits),
                "probabilities": np.asarray(e.error.probabilities, dtype=float).tolist(),
            }
            for e in entries
            if e.instruction is None
        ],
        "delay_passes": passes,
    }


def _rebuild(record: dict):
    from qiskit_aer.noise import NoiseModel, QuantumError, ReadoutError  # lazy: as above

    model = NoiseModel(basis_gates=list(record["basis_gates"]))
    for entry in record["quantum_errors"]:
        circuits = _qpy_circuits(entry["circuits"])
        error = QuantumError(list(zip(circuits, entry["probabilities"], strict=True)))
        qubits = None if entry["qubits"] is None else tuple(entry["qubits"])
        for name in entry["instructions"]:
            _add(model, _Entry(name, qubits, error))
    for entry in record["readout_errors"]:
        qubits = None if entry["qubits"] is None else tuple(entry["qubits"])
        _add(model, _Entry(None, qubits, ReadoutError(entry["probabilities"])))
    return model


def restricted_model(model, physical: tuple[int, ...]):
    """``model`` on the qubits ``physical`` only, renumbered: qubit ``c`` of the result is
    qubit ``physical[c]`` of ``model`` (errors on other qubits are left out; all-qubit errors
    stay all-qubit). Custom noise passes are not carried over."""
    from qiskit_aer.noise import NoiseModel  # lazy: Aer, not with the options

    simulated = {p: c for c, p in enumerate(physical)}
    out = NoiseModel(basis_gates=sorted(model.basis_gates))
    for entry in _entries(model)[0]:
        if entry.qubits is None:
            _add(out, entry)
        elif all(q in simulated for q in entry.qubits):
            qubits = tuple(simulated[q] for q in entry.qubits)
            _add(out, _Entry(entry.instruction, qubits, entry.error))
    return out


@dataclass(frozen=True)
class GivenNoise:
    """A run's noise from a user's ``qiskit_aer.noise.NoiseModel``: the circuit is
    translated to the model's basis gates and simulated with the model's own errors."""

    record: dict = field(repr=False)

    @classmethod
    def from_model(cls, model: object) -> GivenNoise:
        from qiskit_aer.noise import NoiseModel  # lazy: Aer, not with the options

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
                "delays"
            )

    def model_for(self, num_qubits: int):
        """The Aer ``NoiseModel`` to simulate with (rebuilt from the record)."""
        return _rebuild(self.record)

    def to_meta(self) -> dict:
        return self.record
