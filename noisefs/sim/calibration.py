"""Validation of noise parameters and reading of calibration files (JSON or TOML).

Every check names the option or calibration entry it rejects; nothing is clipped.
See ``docs/calibration.md`` for the file format.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from noisefs.errors import InputError, NoiseParameterError, one_line
from noisefs.units import parse_duration

TIME_KEYS = ("t1", "t2", "time_1q", "time_2q")
PROB_KEYS = ("p1", "p2", "readout")


# ---------------------------------------------------------------------------------------------
# checks


def check_duration(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NoiseParameterError(f"{what} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise NoiseParameterError(f"{what} = {value!r} must be a finite duration >= 0 seconds")


def check_probability(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NoiseParameterError(f"{what} must be a probability, not {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise NoiseParameterError(f"{what} = {value!r} is not a probability in [0, 1]")


def check_times(t1: Any, t2: Any, prefix: str) -> None:
    check_duration(t1, f"{prefix}t1_s")
    check_duration(t2, f"{prefix}t2_s")
    if t1 == 0:
        raise NoiseParameterError(f"{prefix}T1 must be > 0 seconds (got 0)")
    if t2 == 0:
        raise NoiseParameterError(f"{prefix}T2 must be > 0 seconds (got 0)")
    if t2 > 2 * t1:
        raise NoiseParameterError(
            f"{prefix}T2 = {t2:g} s exceeds 2*T1 = {2 * t1:g} s, which is physically impossible; "
            "lower T2 or raise T1"
        )


def unknown(entry: Any, allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(entry, dict):
        raise NoiseParameterError(f"{what}: expected a table of values, not {entry!r}")
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise NoiseParameterError(
            f"{what}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(allowed)})"
        )


_INDEX = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit accepts '²', int() not


def index(key: Any, what: str) -> int:
    text = str(key).strip()
    if not _INDEX.fullmatch(text):
        raise NoiseParameterError(f"{what} index {key!r} is not a whole number >= 0")
    return int(text)


def pair_index(key: Any) -> tuple[int, int]:
    parts = str(key).split(",")
    if len(parts) != 2:
        raise NoiseParameterError(f"pair {key!r} must be written 'a,b' (control,target)")
    a, b = (index(p, "pair qubit") for p in parts)
    if a == b:
        raise NoiseParameterError(f"pair {key!r} names the same qubit twice")
    return a, b


# ---------------------------------------------------------------------------------------------
# reading values


def _short(value: Any) -> str:
    shown = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return shown if len(shown) <= 60 else shown[:57] + "..."


def duration(value: Any, what: str) -> float:
    try:
        return parse_duration(value)
    except InputError as exc:
        raise NoiseParameterError(f"{what}: {exc}") from None


def probability(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise NoiseParameterError(f"{what}: expected a probability, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise NoiseParameterError(f"{what}: the number is too large for a probability") from None
    except (TypeError, ValueError):
        raise NoiseParameterError(f"{what}: cannot read probability {_short(value)}") from None
    check_probability(number, what)
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
        out[canonical] = duration(value, what) if kind == "time" else probability(value, what)
    return out


def _names(*keys: str) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for key in keys:
        if key in TIME_KEYS:
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
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"calibration must be a file path, not {type(path).__name__}")
    name = str(path)
    file = Path(os.fspath(path))
    if "\x00" in name:  # open() would raise ValueError
        raise InputError(f"{name!r}: not a file name (it holds a NUL byte)")
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
    as_toml = suffix == ".toml" or (suffix != ".json" and not text.lstrip().startswith("{"))
    try:
        if as_toml:
            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NoiseParameterError(f"{name}: not valid TOML: {one_line(exc)}") from None
    except json.JSONDecodeError as exc:
        raise NoiseParameterError(
            f"{name}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except RecursionError:
        raise NoiseParameterError(f"{name}: the calibration is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise NoiseParameterError(f"{name}: cannot read the calibration: {one_line(exc)}") from None
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
        q = index(key, "qubit")
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
        a, b = pair_index(key)
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
