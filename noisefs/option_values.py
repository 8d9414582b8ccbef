"""The value parsers of the option table: each reads one option's value (from the command
line's text or a Python object) and names the option in its one-line messages."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from noisefs.errors import InputError
from noisefs.observables import Observable, load_observables_file, parse_observables
from noisefs.units import parse_duration, parse_size

STORES = ("factored", "dense")

# Every count reaches numpy, SQLite or Aer's C++ configuration as a signed 64-bit integer.
INT64_MAX = 2**63 - 1
MAX_AER_THREADS = 4096  # Aer's thread option is a C int; more threads than this help no one


def shown(number: int) -> str:
    """An integer for a message: written out when short, as its size when not."""
    return str(number) if abs(number) < 10**30 else f"an integer of {number.bit_length()} bits"


def integer(minimum: int = 1, maximum: int = INT64_MAX) -> Callable[[str, object], int]:
    def parse(flag: str, value: object) -> int:
        if isinstance(value, bool):
            raise InputError(f"{flag} must be an integer, not {value!r}")
        text = None if isinstance(value, int) else str(value).strip()
        if text is not None and len(text) > 40:
            raise InputError(f"{flag} must be an integer of at most {maximum}, not {text[:20]}...")
        try:
            number = value if text is None else int(text)
        except ValueError:
            raise InputError(f"{flag} must be an integer, not {value!r}") from None
        if number < minimum:
            raise InputError(f"{flag} must be at least {minimum}, not {shown(number)}")
        if number > maximum:
            raise InputError(f"{flag} must be at most {maximum}, not {shown(number)}")
        return number

    return parse


def seed(flag: str, value: object) -> int:
    return integer(minimum=0)(flag, value)  # below 2**63, as Aer's seed_simulator


def optimize(flag: str, value: object) -> int:
    level = integer(minimum=0)(flag, value)
    if level > 3:
        raise InputError(f"{flag} takes 0, 1, 2 or 3, not {level}")
    return level


def size(flag: str, value: object) -> int:
    return parse_size(value)


def duration(flag: str, value: object) -> float:
    return parse_duration(value)


def positive_float(flag: str, value: object) -> float:
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (and its repr beyond int()'s digits)
        what = shown(value) if isinstance(value, int) else f"a {type(value).__name__} too large"
        raise InputError(f"{flag} takes a positive number, not {what}") from None
    except (TypeError, ValueError):
        raise InputError(f"{flag} takes a positive number, not {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise InputError(f"{flag} must be a positive finite number, not {number}")
    return number


def path(flag: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{flag} must be a file or directory path, not {value!r}")
    return Path(value).expanduser()


def store(flag: str, value: object) -> str:
    if str(value) not in STORES:
        raise InputError(f"{flag} takes 'factored' or 'dense', not {value!r}")
    return str(value)


def text(flag: str, value: object) -> str:
    return str(value)


def flag(flag: str, value: object) -> bool:
    return bool(value)


def negated(flag: str, value: object) -> bool:
    return not value  # --no-X sets X to False


def raw(flag: str, value: object) -> object:
    return value  # validated by its consumer (the noise model, the scheduler connection)


def parse_keep_qubits(text: str | tuple | list | int | None) -> tuple[int, ...] | None:
    """``"0,2,3"`` or a sequence of ints → sorted unique tuple."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        text = [text]
    try:
        items = text.split(",") if isinstance(text, str) else list(text)
        values = [int(str(item).strip()) for item in items if str(item).strip()]
    except (TypeError, ValueError):
        raise InputError(
            f"--keep-qubits takes comma-separated qubit indices, not {text!r}"
        ) from None
    if len(set(values)) != len(values):
        raise InputError(f"--keep-qubits names a qubit twice: {text!r}")
    # the reduced state keeps Qiskit's order: the lowest kept qubit is least significant
    qubits = sorted(values)
    if not qubits or qubits[0] < 0:
        raise InputError(f"--keep-qubits takes non-negative qubit indices, not {text!r}")
    return tuple(qubits)


def keep(flag: str, value: object) -> tuple[int, ...] | None:
    return parse_keep_qubits(value)  # type: ignore[arg-type]


def observables(flag: str, value: object) -> tuple[Observable, ...]:
    return parse_observables(value)


def observables_file(flag: str, value: object) -> tuple[Observable, ...]:
    if isinstance(value, (list, tuple)):  # the flag given more than once
        return tuple(o for path in value for o in load_observables_file(str(path)))
    return load_observables_file(str(value))


_QUOTABLE_BITS = 14_000  # str() of an int raises beyond 4,300 digits (about 14,284 bits)
_QUOTABLE_DEPTH = 8


def _unquotable(value: object, depth: int = 0) -> str | None:
    if isinstance(value, int) and value.bit_length() > _QUOTABLE_BITS:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= _QUOTABLE_DEPTH:
            return f"containers nested more than {_QUOTABLE_DEPTH} deep"
        items = [x for kv in value.items() for x in kv] if isinstance(value, dict) else value
        for item in items:
            why = _unquotable(item, depth + 1)
            if why is not None:
                return why
    return None


def check_quotable(flag: str, value: object) -> None:
    """Refuse a value no message can quote, before any parser tries: ``str()`` of an integer
    of more than 4,300 digits raises ``ValueError`` and ``repr()`` of a list nested a
    thousand deep ``RecursionError``; no option takes either."""
    why = _unquotable(value)
    if why is not None:
        raise InputError(f"{flag} takes no value holding {why}")
