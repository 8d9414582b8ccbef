"""The noise of a device: a ``BackendV2`` (or the name of one of ``qiskit_ibm_runtime``'s fake
devices), its noise as ``NoiseModel.from_backend`` builds it, cut down to the physical qubits
a circuit uses.

The cut-down model is recorded in the result like any user's model
(:class:`~noisefs.sim.noise_model.GivenNoise`), so the oracle rebuilds it exactly without the
device's package; the device's name and its provider's version are recorded beside it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from noisefs.errors import InputError, MissingExtra
from noisefs.sim.noise_model import GivenNoise, restricted_model

__all__ = ["DeviceNoise", "load_backend"]

_PROVIDER = "qiskit_ibm_runtime.fake_provider"


def load_backend(value: object):
    """A ``BackendV2`` as given, or the fake device of that name (``FakeTorino``)."""
    from qiskit.providers import BackendV2  # lazy: qiskit, not with the options

    if not isinstance(value, str):
        if not isinstance(value, BackendV2):
            raise InputError(
                f"backend must be a BackendV2 or a fake device's name, not {type(value).__name__}"
            )
        return value
    try:  # lazy: qiskit-ibm-runtime, an optional extra, only for --backend
        import qiskit_ibm_runtime.fake_provider as fakes
    except ImportError:
        raise MissingExtra(
            f"--backend {value} needs qiskit-ibm-runtime's fake devices: "
            "pip install 'noisefs[devices]'",
            extra="devices",
        ) from None

    def device(name: str) -> bool:  # the module holds providers too (FakeProviderForBackendV2)
        cls = getattr(fakes, name, None)
        return name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, BackendV2)

    cls = getattr(fakes, value, None)
    if not device(value):
        known = sorted(n for n in dir(fakes) if device(n) and not n.endswith("V1"))
        close = [n for n in known if n.lower().startswith(value.lower()[:6])][:5] or known[:5]
        raise InputError(f"no fake device {value!r} in {_PROVIDER} (e.g. {', '.join(close)})")
    try:
        return cls()
    except Exception as exc:  # a V1 device or one whose data does not load
        raise InputError(f"cannot load the fake device {value}: {exc}") from None


@functools.lru_cache(maxsize=4)
def _full_model(backend):
    from qiskit_aer.noise import NoiseModel  # lazy: Aer, not with the options

    return NoiseModel.from_backend(backend)


@dataclass(frozen=True, eq=False)
class DeviceNoise:
    """A device whose noise a run takes; :meth:`bind` cuts it to the qubits a circuit uses."""

    backend: Any

    @property
    def name(self) -> str:
        return str(self.backend.name)

    def bind(self, physical: tuple[int, ...], circuit: Any) -> GivenNoise:
        """The device's noise on ``physical`` (simulated qubit c is device qubit
        ``physical[c]``), as a recorded model."""
        if any(inst.operation.name == "delay" for inst in circuit.data):
            raise InputError(
                "delays are not supported with a device's noise yet (their relaxation is a "
                "custom pass of the device's model); remove them"
            )
        return GivenNoise.from_model(restricted_model(_full_model(self.backend), physical))

    def to_meta(self) -> dict:
        """What the result records of the device (beside the cut-down model)."""
        version = None
        try:  # lazy: qiskit-ibm-runtime, an optional extra
            import qiskit_ibm_runtime

            version = qiskit_ibm_runtime.__version__
        except ImportError:
            pass
        return {
            "backend": self.name,
            "class": type(self.backend).__name__,
            "module": type(self.backend).__module__,
            "qiskit_ibm_runtime": version,
        }
