"""The noise model: its parameters and the Aer ``NoiseModel`` (checks and calibration files
are in :mod:`noisefs.sim.calibration`).

The rule (docs/contract.md "Noise model"), per qubit ``q`` with ``T1(q)``, ``T2(q)``:

* ``rz``: no error (virtual, zero duration).
* ``sx``, ``x`` on ``q``: ``depolarizing_error(p1(q), 1).compose(thermal_relaxation_error(T1(q),
  T2(q), time_1q(q)))`` — depolarizing first, then relaxation.
* ``cx`` on ``(a, b)`` (control ``a`` = ``qargs[0]``): ``depolarizing_error(p2(a,b), 2).compose(
  thermal_relaxation_error(T1(a), T2(a), t).expand(thermal_relaxation_error(T1(b), T2(b), t)))``
  with ``t = time_2q(a,b)``. ``A.expand(B)`` is ``B ⊗ A``: ``A`` acts on the error's qubit 0,
  which Aer maps to ``qargs[0] = a``.
* ``measure`` on ``q``: symmetric ``ReadoutError`` with flip probability ``readout(q)``, only
  when it is > 0.

A zero probability gives an exact identity part, composed as is (Aer recognises ideal
errors). A zero gate time relaxes nothing, so the relaxation factor (the identity channel) is
left out and the gate's error is its depolarizing part alone: the same channel, in a form Aer
0.18 can sample (composed in, it fails with "Kraus is empty" or a LAPACK error). Per-qubit and per-pair
values come from a calibration file (``docs/calibration.md``); where they are silent the
global values apply.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from noisefs.errors import NoiseParameterError
from noisefs.sim.calibration import (
    PROB_KEYS,
    check_duration,
    check_probability,
    check_times,
    duration,
    index,
    load_calibration,
    pair_index,
    probability,
    unknown,
)

BASIS_GATES = ("rz", "sx", "x", "cx")  # the rule's basis: the gates that carry its errors

__all__ = [
    "NoiseParams",
    "build_noise_model",
    "load_calibration",
    "noise_params",
]

_QUBIT_KEYS = ("t1_s", "t2_s", "time_1q_s", "p1", "readout")
_PAIR_KEYS = ("time_2q_s", "p2")


@dataclass(frozen=True)
class NoiseParams:
    """Every number of the noise model, in SI units (seconds, probabilities).

    ``per_qubit`` is ``None`` or ``{"qubits": {"<q>": {...}}, "pairs": {"<a>,<b>": {...}}}``
    where a qubit entry may hold ``t1_s``, ``t2_s``, ``time_1q_s``, ``p1``, ``readout`` and a
    pair entry ``time_2q_s``, ``p2``; keys are decimal strings so it is JSON as is. A pair
    ``"a,b"`` is the ``cx`` with control ``a`` and target ``b``; :func:`load_calibration`
    also applies it to ``b,a`` unless that pair is given too.
    """

    t1_s: float = 50e-6
    t2_s: float = 70e-6
    time_1q_s: float = 50e-9
    time_2q_s: float = 300e-9
    p1: float = 1e-3
    p2: float = 1e-2
    readout: float = 0.0
    per_qubit: dict | None = field(default=None, hash=False)

    # -- effective values ------------------------------------------------------------------

    def _qubit(self, q: int) -> dict:
        if not self.per_qubit:
            return {}
        return self.per_qubit.get("qubits", {}).get(str(q), {})

    def _pair(self, a: int, b: int) -> dict:
        if not self.per_qubit:
            return {}
        return self.per_qubit.get("pairs", {}).get(f"{a},{b}", {})

    def qubit(self, q: int) -> dict[str, float]:
        """Effective ``t1_s``, ``t2_s``, ``time_1q_s``, ``p1``, ``readout`` of qubit ``q``."""
        own = self._qubit(q)
        return {key: float(own.get(key, getattr(self, key))) for key in _QUBIT_KEYS}

    def pair(self, a: int, b: int) -> dict[str, float]:
        """Effective ``time_2q_s`` and ``p2`` of the ``cx`` with control ``a``, target ``b``."""
        own = self._pair(a, b)
        return {key: float(own.get(key, getattr(self, key))) for key in _PAIR_KEYS}

    # -- checks ----------------------------------------------------------------------------

    def validate(self, num_qubits: int | None = None) -> None:
        """Raise :class:`NoiseParameterError` for anything impossible; never clip."""
        check_times(self.t1_s, self.t2_s, "")
        for key in ("time_1q_s", "time_2q_s"):
            check_duration(getattr(self, key), key)
        for key in PROB_KEYS:
            check_probability(getattr(self, key), key)
        if self.per_qubit is None:
            return
        if not isinstance(self.per_qubit, dict) or set(self.per_qubit) - {"qubits", "pairs"}:
            raise NoiseParameterError(
                "per_qubit must be a dict with 'qubits' and/or 'pairs' (see docs/calibration.md)"
            )
        qubits = self.per_qubit.get("qubits", {}) or {}
        pairs = self.per_qubit.get("pairs", {}) or {}
        for key, entry in qubits.items():
            q = index(key, "qubit")
            if num_qubits is not None and q >= num_qubits:
                raise NoiseParameterError(
                    f"calibration gives qubit {q} but the circuit has {num_qubits} qubit(s) "
                    f"(0..{num_qubits - 1}); remove it from the calibration"
                )
            unknown(entry, _QUBIT_KEYS, f"qubit {q}")
            values = self.qubit(q)
            check_times(values["t1_s"], values["t2_s"], f"qubit {q}: ")
            check_duration(values["time_1q_s"], f"qubit {q}: time_1q_s")
            check_probability(values["p1"], f"qubit {q}: p1")
            check_probability(values["readout"], f"qubit {q}: readout")
        for key, entry in pairs.items():
            a, b = pair_index(key)
            for q in (a, b):
                if num_qubits is not None and q >= num_qubits:
                    raise NoiseParameterError(
                        f"calibration gives pair {a},{b} but the circuit has {num_qubits} "
                        f"qubit(s); remove it from the calibration"
                    )
            unknown(entry, _PAIR_KEYS, f"pair {a},{b}")
            values = self.pair(a, b)
            check_duration(values["time_2q_s"], f"pair {a},{b}: time_2q_s")
            check_probability(values["p2"], f"pair {a},{b}: p2")

    @property
    def basis_gates(self) -> tuple[str, ...]:
        """The rule's basis: ``rz, sx, x, cx``."""
        return BASIS_GATES

    def check_circuit(self, circuit: object) -> None:
        """Every executed circuit takes the rule (nothing to check)."""

    def model_for(self, num_qubits: int):
        """The Aer ``NoiseModel`` of the rule for ``num_qubits`` qubits."""
        return build_noise_model(self, num_qubits)

    def to_meta(self) -> dict:
        """The ``noise`` object of the result file's ``meta`` (exactly the keys of
        docs/contract.md "The result file")."""
        meta: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        meta["per_qubit"] = json.loads(json.dumps(self.per_qubit)) if self.per_qubit else None
        for key in meta:
            if key != "per_qubit":
                meta[key] = float(meta[key])
        return meta


def noise_params(
    t1: str | float | None = None,
    t2: str | float | None = None,
    time_1q: str | float | None = None,
    time_2q: str | float | None = None,
    p1: str | float | None = None,
    p2: str | float | None = None,
    readout: str | float | None = None,
    calibration: str | os.PathLike | None = None,
) -> NoiseParams:
    """Noise parameters from options (``"50us"``, ``"70e-6"``, ``300e-9`` ...), validated.

    Precedence: an explicit argument > the calibration file's global value > the default.
    Per-qubit and per-pair calibration values win over globals for their qubits and pairs.
    Raises :class:`NoiseParameterError` (exit 2) naming the offending option.
    """
    values: dict[str, Any] = {}
    per_qubit = None
    if calibration is not None:
        loaded = load_calibration(calibration)
        values.update(loaded["globals"])
        per_qubit = loaded["per_qubit"]
    given = {"t1": t1, "t2": t2, "time_1q": time_1q, "time_2q": time_2q}
    for key, value in given.items():
        if value is not None:
            values[f"{key}_s"] = duration(value, key.replace("_", "-"))
    for key, value in {"p1": p1, "p2": p2, "readout": readout}.items():
        if value is not None:
            values[key] = probability(value, key)
    params = NoiseParams(**values, per_qubit=per_qubit)
    try:
        params.validate()
    except NoiseParameterError as exc:
        if calibration is not None and params.per_qubit:
            raise NoiseParameterError(f"{calibration}: {exc}") from None
        raise
    return params


# ---------------------------------------------------------------------------------------------
# the model


def build_noise_model(params: NoiseParams, num_qubits: int):
    """The Aer ``NoiseModel`` of the rule in docs/contract.md "Noise model" for ``num_qubits``
    qubits (module docstring)."""
    # lazy: Aer loads with a run, not with the options (the CLI's parser)
    from qiskit_aer.noise import (
        NoiseModel,
        ReadoutError,
        depolarizing_error,
        thermal_relaxation_error,
    )

    params.validate(num_qubits)
    model = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])

    # Errors are built once per distinct parameter set: composing them is slow, and an
    # all-qubit error (no calibration) keeps the model tiny, which Aer serialises on every run.
    # A gate of zero duration relaxes nothing: its relaxation is the identity channel and is
    # left out. Composed in, Aer 0.18 fails on the model ("Kraus is empty", heevx, or worse).
    @functools.cache
    def one_qubit(p1: float, t1: float, t2: float, time: float):
        error = depolarizing_error(p1, 1)
        return error if time == 0 else error.compose(thermal_relaxation_error(t1, t2, time))

    @functools.cache
    def two_qubit(p2: float, t1a: float, t2a: float, t1b: float, t2b: float, time: float):
        error = depolarizing_error(p2, 2)
        if time == 0:
            return error
        relax = thermal_relaxation_error(t1a, t2a, time).expand(
            thermal_relaxation_error(t1b, t2b, time)
        )
        return error.compose(relax)

    def readout_error(r: float):
        return ReadoutError([[1 - r, r], [r, 1 - r]])

    if params.per_qubit is None:
        model.add_all_qubit_quantum_error(
            one_qubit(params.p1, params.t1_s, params.t2_s, params.time_1q_s), ["sx", "x"]
        )
        if num_qubits > 1:
            error = two_qubit(
                params.p2, params.t1_s, params.t2_s, params.t1_s, params.t2_s, params.time_2q_s
            )
            model.add_all_qubit_quantum_error(error, ["cx"])
        if params.readout > 0:
            model.add_all_qubit_readout_error(readout_error(params.readout))
        return model
    qubit = [params.qubit(q) for q in range(num_qubits)]
    for q, v in enumerate(qubit):
        model.add_quantum_error(
            one_qubit(v["p1"], v["t1_s"], v["t2_s"], v["time_1q_s"]), ["sx", "x"], [q]
        )
        if v["readout"] > 0:
            model.add_readout_error(readout_error(v["readout"]), [q])
    for a in range(num_qubits):
        for b in range(num_qubits):
            if a == b:
                continue
            pair = params.pair(a, b)
            error = two_qubit(
                pair["p2"],
                qubit[a]["t1_s"],
                qubit[a]["t2_s"],
                qubit[b]["t1_s"],
                qubit[b]["t2_s"],
                pair["time_2q_s"],
            )
            model.add_quantum_error(error, "cx", [a, b])
    return model
