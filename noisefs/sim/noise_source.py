"""What a run's noise is, whichever way it was given: the contract's rule with its parameters
(:class:`~noisefs.sim.noise.NoiseParams`) or a user's Aer model
(:class:`~noisefs.sim.noise_model.GivenNoise`), and the way back from a result's record."""

from __future__ import annotations

from typing import Any, Protocol

from noisefs.sim.noise import NoiseParams
from noisefs.sim.noise_model import KIND, GivenNoise

__all__ = ["NoiseSource", "noise_from_meta"]


class NoiseSource(Protocol):
    """The noise of a run: the basis its circuit is translated to, the Aer model, a record."""

    @property
    def basis_gates(self) -> tuple[str, ...]: ...

    def validate(self, num_qubits: int) -> None:
        """Raise :class:`~noisefs.errors.InputError` when the noise cannot apply to a
        circuit of ``num_qubits`` qubits."""

    def check_circuit(self, circuit: Any) -> None:
        """Raise :class:`~noisefs.errors.InputError` for an executed circuit the noise
        cannot be reproduced on."""

    def model_for(self, num_qubits: int) -> Any:
        """The ``qiskit_aer.noise.NoiseModel`` to simulate with."""

    def to_meta(self) -> dict:
        """The JSON record in the result's ``meta["noise"]`` (:func:`noise_from_meta`)."""


def noise_from_meta(record: dict) -> NoiseSource:
    """The noise a result recorded, exactly as the run simulated it."""
    if record.get("kind") == KIND:
        return GivenNoise.from_meta(record)
    return NoiseParams(**record)
