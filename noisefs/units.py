"""One parser for human units: sizes (``512MiB``, ``2GiB``) and durations (``50us``, ``70e-6``)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from noisefs.errors import InputError

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

# Divisors rather than factors: 50 / 1e6 is exactly the float 5e-05, 50 * 1e-6 is not.
_TIME_DIVISORS = {
    "": 1.0,
    "s": 1.0,
    "ms": 1e3,
    "us": 1e6,
    "µs": 1e6,
    "μs": 1e6,
    "ns": 1e9,
    "ps": 1e12,
}

_NUMBER_WITH_UNIT = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s.+-]*)\s*$"
)


_MAX_DIGITS = 400  # digits in a size's number: far beyond 2**63 bytes, far below int()'s limit


def _shown(value: object) -> str:
    """A value for a message: its repr, cut short."""
    if isinstance(value, int) and abs(value) >= 10**30:  # str() of 5,000 digits raises
        return f"{'-' if value < 0 else ''}(an integer of {value.bit_length()} bits)"
    shown = str(value) if isinstance(value, int) else repr(value)
    return shown if len(shown) <= 40 else f"{shown[:30]}... ({len(shown)} characters)"


_CONTAINERS = (list, tuple, dict, set, frozenset)  # str() of one may raise (a huge int, depth)


def _split(text: str, what: str) -> tuple[float, str]:
    if isinstance(text, _CONTAINERS):
        raise InputError(f"{what} must be a number or a string, not a {type(text).__name__}")
    match = _NUMBER_WITH_UNIT.match(str(text))
    if not match:
        raise InputError(f"cannot read {what} {text!r}")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise InputError(f"{what} {text!r} is not finite")
    return value, match.group(2)


def parse_size(text: str | int) -> int:
    """Bytes from ``1024``, ``64k``, ``512MiB``, ``1.5GiB`` (SI k/M/G, binary KiB/MiB/GiB).

    Raises :class:`InputError` for negative, fractional-byte or malformed sizes.
    """
    if isinstance(text, bool):
        raise InputError(f"size must be a number of bytes or a string like '512MiB', not {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise InputError(f"size {_shown(text)} is negative")
        if text >= 2**63:
            raise InputError(f"size {_shown(text)} is too large")
        return text
    if isinstance(text, _CONTAINERS):
        raise InputError(f"size must be a number or a string, not a {type(text).__name__}")
    match = _NUMBER_WITH_UNIT.match(str(text))
    if not match:
        raise InputError(f"cannot read size {text!r}")
    unit = match.group(2)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise InputError(
            f"unknown size unit {unit!r} in {text!r} (use B, KiB, MiB, GiB, kB, MB, GB)"
        )
    # exact arithmetic: '9007199254740993' must not round through a float; bounded first,
    # since Fraction('1e99999999999') computes 10**99999999999 and 5,000 digits pass no int()
    mantissa, _, exponent = match.group(1).lower().partition("e")
    if len(mantissa) > _MAX_DIGITS or len(exponent.lstrip("+-")) > 4:
        raise InputError(f"size {_shown(text)} is out of range")
    total = Fraction(match.group(1)) * factor
    if total < 0:
        raise InputError(f"size {text!r} is negative")
    if total.denominator != 1:
        raise InputError(f"size {text!r} is not a whole number of bytes")
    if total >= 2**63:
        raise InputError(f"size {text!r} is too large")
    return int(total)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``50us``, ``300ns``, ``70e-6``, ``1.5ms`` or a bare number of seconds.

    Raises :class:`InputError` for negative, non-finite or malformed durations.
    """
    if isinstance(text, bool):
        raise InputError(f"duration must be seconds or a string like '50us', not {text!r}")
    if isinstance(text, (int, float)):
        try:
            value, unit = float(text), ""
        except OverflowError:
            raise InputError("duration is too large (an integer beyond any float)") from None
        if not math.isfinite(value):
            raise InputError(f"duration {text!r} is not finite")
    else:
        value, unit = _split(text, "duration")
    divisor = _TIME_DIVISORS.get(unit if unit in ("µs", "μs") else unit.lower())
    if divisor is None:
        raise InputError(f"unknown time unit {unit!r} in {text!r} (use s, ms, us, ns)")
    if value < 0:
        raise InputError(f"duration {text!r} is negative")
    return value / divisor


def format_bytes(count: int | float) -> str:
    """A short human form: ``1.5 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
