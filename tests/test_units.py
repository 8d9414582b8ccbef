"""Property-based tests of the unit parsers (noisefs.units)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from noisefs.errors import InputError
from noisefs.units import format_bytes, parse_duration, parse_size

BINARY = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
DECIMAL = {"kB": 10**3, "MB": 10**6, "GB": 10**9, "k": 10**3, "M": 10**6, "G": 10**9}
TIME = {"s": 1.0, "ms": 1e3, "us": 1e6, "µs": 1e6, "ns": 1e9}


@given(st.integers(min_value=0, max_value=2**53))
def test_size_int_and_decimal_string_round_trip(n):
    assert parse_size(n) == n
    assert parse_size(str(n)) == n
    assert parse_size(f"{n}B") == n


def test_size_strings_above_2_53_are_exact():
    assert parse_size(str(2**53 + 1)) == 2**53 + 1


@given(
    st.integers(min_value=0, max_value=4096),
    st.sampled_from(sorted({**BINARY, **DECIMAL})),
    st.booleans(),
)
def test_size_units(value, unit, space):
    factor = {**BINARY, **DECIMAL}[unit]
    text = f"{value}{' ' if space else ''}{unit}"
    assert parse_size(text) == value * factor
    assert parse_size(text.lower() if unit != "B" else text) == value * factor


@given(st.integers(min_value=0, max_value=2**40))
def test_format_bytes_parses_back_approximately(n):
    text = format_bytes(n)
    number, unit = text.split()
    value = float(number) * BINARY[unit]
    assert abs(value - n) <= 0.05 * BINARY[unit] + 1


@given(st.integers(min_value=1, max_value=2**40))
def test_negative_sizes_rejected(n):
    with pytest.raises(InputError):
        parse_size(-n)
    with pytest.raises(InputError):
        parse_size(f"-{n}MiB")


@given(st.text(alphabet="abcxyz!@#%^&*()[]{}", min_size=1, max_size=8))
def test_garbage_sizes_rejected(text):
    with pytest.raises(InputError):
        parse_size(text)


@pytest.mark.parametrize(
    "bad", ["", "MiB", "1.5B", "1e400", "nan", "inf", "1 2", "--1", True, "1XB"]
)
def test_bad_sizes(bad):
    with pytest.raises(InputError):
        parse_size(bad)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(sorted(TIME)))
def test_duration_round_trip(value, unit):
    text = f"{value!r}{unit}"
    assert math.isclose(parse_duration(text), value / TIME[unit], rel_tol=1e-12, abs_tol=0)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_duration_bare_seconds(value):
    assert parse_duration(value) == value
    assert parse_duration(repr(value)) == value


def test_duration_exact_values():
    assert parse_duration("50us") == 50e-6
    assert parse_duration("300ns") == 300e-9
    assert parse_duration("70e-6") == 70e-6


@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_negative_durations_rejected(value):
    with pytest.raises(InputError):
        parse_duration(-value)
    with pytest.raises(InputError):
        parse_duration(f"-{value!r}us")


@pytest.mark.parametrize(
    "bad", ["", "fast", "5 parsecs", "1e999s", float("inf"), float("nan"), False, "1..2s"]
)
def test_bad_durations(bad):
    with pytest.raises(InputError):
        parse_duration(bad)
