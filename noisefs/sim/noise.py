"""The noise model: parameters, validation, calibration files, and the Aer ``NoiseModel``.

The rule (SPEC "Noise model"), per qubit ``q`` with ``T1(q)``, ``T2(q)``:

* ``rz``: no error (virtual, zero duration).
* ``sx``, ``x`` on ``q``: ``depolarizing_error(p1(q), 1).compose(thermal_relaxation_error(T1(q),
  T2(q), time_1q(q)))`` — depolarizing first, then relaxation.
* ``cx`` on ``(a, b)`` (control ``a`` = ``qargs[0]``): ``depolarizing_error(p2(a,b), 2).compose(
  thermal_relaxation_error(T1(a), T2(a), t).expand(thermal_relaxation_error(T1(b), T2(b), t)))``
  with ``t = time_2q(a,b)``. ``A.expand(B)`` is ``B ⊗ A``: ``A`` acts on the error's qubit 0,
  which Aer maps to ``qargs[0] = a``.
* ``measure`` on ``q``: symmetric ``ReadoutError`` with flip probability ``readout(q)``, only
  when it is > 0.

A zero probability or zero duration gives an exact identity part; it is composed as is (Aer
recognises ideal errors), so the model is always the formula above. Per-qubit and per-pair
values come from a calibration file (``docs/calibration.md``); where they are silent the
global values apply.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from noisefs.errors import InputError, NoiseParameterError
from noisefs.units import parse_duration

__all__ = [
    "NoiseParams",
    "build_noise_model",
    "load_calibration",
    "noise_params",
]

_TIME_KEYS = ("t1", "t2", "time_1q", "time_2q")
_PROB_KEYS = ("p1", "p2", "readout")
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
        _check_times(self.t1_s, self.t2_s, "")
        for key in ("time_1q_s", "time_2q_s"):
            _check_duration(getattr(self, key), key)
        for key in _PROB_KEYS:
            _check_probability(getattr(self, key), key)
        if self.per_qubit is None:
            return
        if not isinstance(self.per_qubit, dict) or set(self.per_qubit) - {"qubits", "pairs"}:
            raise NoiseParameterError(
                "per_qubit must be a dict with 'qubits' and/or 'pairs' (see docs/calibration.md)"
            )
        qubits = self.per_qubit.get("qubits", {}) or {}
        pairs = self.per_qubit.get("pairs", {}) or {}
        for key, entry in qubits.items():
            q = _index(key, "qubit")
            if num_qubits is not None and q >= num_qubits:
                raise NoiseParameterError(
                    f"calibration gives qubit {q} but the circuit has {num_qubits} qubit(s) "
                    f"(0..{num_qubits - 1}); remove it from the calibration"
                )
            _unknown(entry, _QUBIT_KEYS, f"qubit {q}")
            values = self.qubit(q)
            _check_times(values["t1_s"], values["t2_s"], f"qubit {q}: ")
            _check_duration(values["time_1q_s"], f"qubit {q}: time_1q_s")
            _check_probability(values["p1"], f"qubit {q}: p1")
            _check_probability(values["readout"], f"qubit {q}: readout")
        for key, entry in pairs.items():
            a, b = _pair_index(key)
            for q in (a, b):
                if num_qubits is not None and q >= num_qubits:
                    raise NoiseParameterError(
                        f"calibration gives pair {a},{b} but the circuit has {num_qubits} "
                        f"qubit(s); remove it from the calibration"
                    )
            _unknown(entry, _PAIR_KEYS, f"pair {a},{b}")
            values = self.pair(a, b)
            _check_duration(values["time_2q_s"], f"pair {a},{b}: time_2q_s")
            _check_probability(values["p2"], f"pair {a},{b}: p2")

    def to_meta(self) -> dict:
        """The ``noise`` object of the result file's ``meta`` (SPEC keys exactly)."""
        meta: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        meta["per_qubit"] = json.loads(json.dumps(self.per_qubit)) if self.per_qubit else None
        for key in meta:
            if key != "per_qubit":
                meta[key] = float(meta[key])
        return meta


# ---------------------------------------------------------------------------------------------
# checks


def _check_duration(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NoiseParameterError(f"{what} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise NoiseParameterError(f"{what} = {value!r} must be a finite duration >= 0 seconds")


def _check_probability(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NoiseParameterError(f"{what} must be a probability, not {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise NoiseParameterError(f"{what} = {value!r} is not a probability in [0, 1]")


def _check_times(t1: Any, t2: Any, prefix: str) -> None:
    _check_duration(t1, f"{prefix}t1_s")
    _check_duration(t2, f"{prefix}t2_s")
    if t1 == 0:
        raise NoiseParameterError(f"{prefix}T1 must be > 0 seconds (got 0)")
    if t2 == 0:
        raise NoiseParameterError(f"{prefix}T2 must be > 0 seconds (got 0)")
    if t2 > 2 * t1:
        raise NoiseParameterError(
            f"{prefix}T2 = {t2:g} s exceeds 2*T1 = {2 * t1:g} s, which is physically impossible; "
            "lower T2 or raise T1"
        )


def _unknown(entry: Any, allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(entry, dict):
        raise NoiseParameterError(f"{what}: expected a table of values, not {entry!r}")
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise NoiseParameterError(
            f"{what}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(allowed)})"
        )


def _index(key: Any, what: str) -> int:
    text = str(key).strip()
    if not text.isdigit():
        raise NoiseParameterError(f"{what} index {key!r} is not a whole number >= 0")
    return int(text)


def _pair_index(key: Any) -> tuple[int, int]:
    parts = str(key).split(",")
    if len(parts) != 2:
        raise NoiseParameterError(f"pair {key!r} must be written 'a,b' (control,target)")
    a, b = (_index(p, "pair qubit") for p in parts)
    if a == b:
        raise NoiseParameterError(f"pair {key!r} names the same qubit twice")
    return a, b


# ---------------------------------------------------------------------------------------------
# reading values


def _duration(value: Any, what: str) -> float:
    try:
        return parse_duration(value)
    except InputError as exc:
        raise NoiseParameterError(f"{what}: {exc}") from None


def _probability(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise NoiseParameterError(f"{what}: expected a probability, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NoiseParameterError(f"{what}: cannot read probability {value!r}") from None
    _check_probability(number, what)
    return number


def _read_entry(entry: Any, names: dict[str, tuple[str, str]], where: str) -> dict[str, float]:
    """Normalise one table: ``names`` maps an accepted key to (canonical key, kind)."""
    if not isinstance(entry, dict):
        raise NoiseParameterError(f"{where}: expected a table of values, not {entry!r}")
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key not in names:
            allowed = ", ".join(sorted(names))
            raise NoiseParameterError(f"{where}: unknown key {key!r} (allowed: {allowed})")
        canonical, kind = names[key]
        if canonical in out:
            raise NoiseParameterError(f"{where}: {canonical} is given twice")
        what = f"{where}: {key}"
        out[canonical] = _duration(value, what) if kind == "time" else _probability(value, what)
    return out


def _names(*keys: str) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for key in keys:
        if key in _TIME_KEYS:
            names[key] = names[f"{key}_s"] = (f"{key}_s", "time")
        else:
            names[key] = (key, "prob")
    return names


_GLOBAL_NAMES = _names("t1", "t2", "time_1q", "time_2q", "p1", "p2", "readout")
_QUBIT_NAMES = _names("t1", "t2", "time_1q", "p1", "readout")
_PAIR_NAMES = _names("time_2q", "p2")


def load_calibration(path: str | os.PathLike) -> dict:
    """Read a calibration file (``.json``, or ``.toml``; see ``docs/calibration.md``).

    Returns ``{"globals": {...}, "per_qubit": {"qubits": {...}, "pairs": {...}} | None}`` with
    every time in seconds (``t1_s`` ...) and every key checked. Errors name the file.
    """
    name = str(path)
    file = Path(os.fspath(path))
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such calibration file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a calibration file") from None
    except OSError as exc:
        raise InputError(
            f"{name}: cannot read the calibration file: {exc.strerror or exc}"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NoiseParameterError(f"{name}: the calibration file is not UTF-8 text") from None
    raw = _parse_calibration(text, name, file.suffix.lower())
    try:
        return _normalise_calibration(raw)
    except NoiseParameterError as exc:
        raise NoiseParameterError(f"{name}: {exc}") from None


def _parse_calibration(text: str, name: str, suffix: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    as_toml = suffix == ".toml" or (suffix != ".json" and not text.lstrip().startswith("{"))
    if as_toml:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise NoiseParameterError(f"{name}: not valid TOML: {exc}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NoiseParameterError(
                f"{name}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
            ) from None
    if not isinstance(raw, dict):
        raise NoiseParameterError(f"{name}: the calibration must be an object/table at the top")
    return raw


def _normalise_calibration(raw: dict) -> dict:
    top = {k: v for k, v in raw.items() if k not in ("qubits", "pairs")}
    globals_ = _read_entry(top, _GLOBAL_NAMES, "top level")
    qubits: dict[str, dict] = {}
    raw_qubits = raw.get("qubits", {})
    if isinstance(raw_qubits, list):  # a list: position = qubit index
        raw_qubits = {str(i): entry for i, entry in enumerate(raw_qubits)}
    if not isinstance(raw_qubits, dict):
        raise NoiseParameterError("'qubits' must be a table keyed by qubit index, or a list")
    for key, entry in raw_qubits.items():
        q = _index(key, "qubit")
        if str(q) in qubits:
            raise NoiseParameterError(f"qubit {q} is given twice")
        values = _read_entry(entry, _QUBIT_NAMES, f"qubit {q}")
        if values:
            qubits[str(q)] = values
    raw_pairs = raw.get("pairs", {})
    if not isinstance(raw_pairs, dict):
        raise NoiseParameterError("'pairs' must be a table keyed by \"a,b\" (control,target)")
    explicit: dict[tuple[int, int], dict] = {}
    for key, entry in raw_pairs.items():
        a, b = _pair_index(key)
        if (a, b) in explicit:
            raise NoiseParameterError(f"pair {a},{b} is given twice")
        explicit[(a, b)] = _read_entry(entry, _PAIR_NAMES, f"pair {a},{b}")
    pairs: dict[str, dict] = {}
    for (a, b), values in explicit.items():
        if values:
            pairs[f"{a},{b}"] = values
            if (b, a) not in explicit:
                pairs[f"{b},{a}"] = dict(values)
    per_qubit: dict | None = {}
    if qubits:
        per_qubit["qubits"] = dict(sorted(qubits.items(), key=lambda kv: int(kv[0])))
    if pairs:
        per_qubit["pairs"] = dict(
            sorted(pairs.items(), key=lambda kv: tuple(int(x) for x in kv[0].split(",")))
        )
    return {"globals": globals_, "per_qubit": per_qubit or None}


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
            values[f"{key}_s"] = _duration(value, key.replace("_", "-"))
    for key, value in {"p1": p1, "p2": p2, "readout": readout}.items():
        if value is not None:
            values[key] = _probability(value, key)
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
    """The Aer ``NoiseModel`` of the SPEC rule for ``num_qubits`` qubits (module docstring)."""
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
    @functools.cache
    def one_qubit(p1: float, t1: float, t2: float, time: float):
        return depolarizing_error(p1, 1).compose(thermal_relaxation_error(t1, t2, time))

    @functools.cache
    def two_qubit(p2: float, t1a: float, t2a: float, t1b: float, t2b: float, time: float):
        relax = thermal_relaxation_error(t1a, t2a, time).expand(
            thermal_relaxation_error(t1b, t2b, time)
        )
        return depolarizing_error(p2, 2).compose(relax)

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
