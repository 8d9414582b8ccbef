"""Fuzzing options: units (``parse_size``, ``parse_duration``), every option of
``noisefs run`` through ``make_run``, ``noisefs.managed(...)``'s options, and the CLI itself
on a few generated bad inputs (exit 2, one ``noisefs: error:`` line). tests/fuzzing.py has
the rule and the on-demand command."""

from __future__ import annotations

import functools
import math
import shutil
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, event, example, given
from hypothesis import strategies as st

from noisefs.aerscope import managed
from noisefs.aerscope.options import ManagedOptions
from noisefs.errors import NoiseFSError
from noisefs.options import OPTIONS, RunOptions, make_run
from noisefs.sim.noise import NoiseParams
from noisefs.units import parse_duration, parse_size
from tests.fuzzing import fuzz_settings, one_error_line, outcome, run_cli

SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
              "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20,
              "gib": 2**30, "tib": 2**40}  # fmt: skip
TIME_UNITS = {"": 1, "s": 1, "ms": 10**3, "us": 10**6, "µs": 10**6, "ns": 10**9, "ps": 10**12}
TYPOS = ["mibs", "mbb", "kibi", "gi", "ib", "µ", "sec", "secs", "uss", "nss", "m s", "MiB/s",
         "５", "ｍｓ", "µS", "mS", "h", "min", "d", "e", "e5", "%", "ms.", "_", "-", "+"]  # fmt: skip
ODD_NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-400",
               "0x10", "0b1", "1_000", "١٢", "²", "１２", "1,5", "1.5.5", ".", "-", "+", "e3",
               "1e", "--1", "+-1", " ", "", "\t1\n", "1\x00", "9" * 41, "9" * 5000,
               "1" + "0" * 400, "-" + "9" * 30, "0" * 100 + "1", "1e99999999999"]  # fmt: skip
ODD_OBJECTS = [None, True, False, 0, -1, 2**63, 2**64, -(2**63) - 1, 10**400, 0.0, -0.0,
               float("nan"), float("inf"), -float("inf"), 1e-320, 1e308, b"1", [1], (1, 2),
               {"a": 1}, object(), Path("x"), complex(1, 1), Fraction(1, 3), 10**5000,
               -(10**5000), [10**5000], {"k": 10**5000}, functools.reduce(lambda x, _: [x], range(50), [])]  # fmt: skip


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(2**80), 2**80).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.decimals(allow_nan=False, allow_infinity=False).map(str),
        st.sampled_from(ODD_NUMBERS),
    )


def human(units) -> st.SearchStrategy[str]:
    """A number and a unit, spelled as users spell (and mistype) them."""
    unit = st.sampled_from(sorted(units)) | st.sampled_from(TYPOS) | st.text(max_size=4)
    case = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
    space = st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u2028"])
    return st.builds(
        lambda n, s, u, c, lead: f"{lead}{n}{s}{c(u)}", _number(), space, unit, case, space
    )


ANY = st.one_of(
    human(SIZE_UNITS), human(TIME_UNITS), st.text(max_size=30), st.sampled_from(ODD_OBJECTS),
    st.integers(-(2**70), 2**70), st.floats(), _number(),
)  # fmt: skip


@fuzz_settings(ci=200)
@given(value=ANY | human(SIZE_UNITS))
@example(value=2**64)  # found: an int beyond 64 bits was taken as a size (units.py)
@example(value="9" * 5000)  # found: ValueError from int()'s digit limit (units.py)
@example(value="1e99999999999")  # found: Fraction computed 10**99999999999: a hang
def test_parse_size_is_exact_bytes_or_one_input_error(value):
    size, error = outcome(parse_size, value)
    if error is not None:
        return
    assert type(size) is int and 0 <= size < 2**63
    if isinstance(value, str):  # the value the text spells, computed here independently
        number, unit = value.strip(), ""
        while number and not (number[-1].isdigit() or number[-1] == "."):
            number, unit = number[:-1], number[-1] + unit
        assert size == Fraction(number.strip()) * SIZE_UNITS[unit.strip().lower()]
    event("accepted")


@fuzz_settings(ci=200)
@given(value=ANY | human(TIME_UNITS))
def test_parse_duration_is_finite_seconds_or_one_input_error(value):
    seconds, error = outcome(parse_duration, value)
    if error is not None:
        return
    assert type(seconds) is float and math.isfinite(seconds) and seconds >= 0
    event("accepted")


def _values_for(spec) -> st.SearchStrategy:
    specific = {
        "backend": st.sampled_from(
            [
                "FakeTorino",
                "FakeManilaV2",
                "FakeProviderForBackendV2",
                "FakeFractionalBackend",
                "Fake",
                "fake_torino",
                "FakeTorino\n",
                "GenericBackendV2",
                "__class__",
            ]
        ),  # fmt: skip
        "calibration": st.sampled_from(["/nonexistent/cal.json", "/dev/null", "/", "", "\x00"]),
        "observables_file": st.sampled_from(["/nonexistent.toml", "/dev/null", "/", "\x00"]),
        "observable": st.text("IXYZ0123 +-*.e", max_size=20) | st.lists(st.text(max_size=6)),
        "keep_qubits": st.text("0123456789, -", max_size=12) | st.lists(st.integers(-3, 2**64)),
        "snapshots": st.sampled_from(["every:0", "every:-1", "every:99999999999999999999"]),
        "store": st.sampled_from(["factored", "dense", "Dense", "", " dense"]),
        "scheduler": st.sampled_from(["tcp://127.0.0.1:1", "", "\n"]),
    }.get(spec.name)
    plain = (
        ANY if spec.name not in ("arena", "spill", "output", "scheduler_file") else st.just(None)
    )
    return plain if specific is None else st.one_of(specific, plain)


@st.composite
def run_options(draw) -> dict:
    names = draw(st.lists(st.sampled_from(OPTIONS), min_size=1, max_size=4, unique=True))
    kwargs = {spec.name: draw(_values_for(spec)) for spec in names}
    if "scheduler" in kwargs and "scheduler_file" in kwargs:
        kwargs.pop("scheduler_file")
    return kwargs


def check_run(options: object, noise: object) -> None:
    assert isinstance(options, RunOptions)
    for name in ("trajectories", "workers", "seed_transpiler", "max_dm_qubits"):
        value = getattr(options, name)
        assert type(value) is int and 0 <= value < 2**63, (name, value)
    for name in ("quota_bytes", "max_files", "spill_quota_bytes", "batch", "seed", "aer_threads"):
        value = getattr(options, name)
        assert value is None or (type(value) is int and 0 <= value < 2**63), (name, value)
    assert options.aer_threads is None or options.aer_threads <= 4096
    assert 0 <= options.optimize <= 3 and options.store in ("factored", "dense")
    for name in ("put_timeout_s", "checkpoint_interval_s"):
        value = getattr(options, name)
        assert math.isfinite(value) and value >= 0, (name, value)
    assert options.target_tol is None or 0 < options.target_tol < math.inf
    if isinstance(noise, NoiseParams):
        noise.validate()
    else:
        from noisefs.sim.device import DeviceNoise

        assert isinstance(noise, DeviceNoise) and hasattr(noise.backend, "target")


@fuzz_settings(ci=200)
@given(kwargs=run_options())
@example(kwargs={"aer_threads": "99999999999999999999"})
@example(kwargs={"backend": "FakeProviderForBackendV2"})  # found: a provider, not a device
@example(kwargs={"target_tol": 10**400})  # found: OverflowError converting it to a float
@example(kwargs={"trajectories": 10**5000})  # found: str() of it raised (a helper shadowed)
@example(kwargs={"keep_qubits": [10**5000]})  # found: the message's repr() of it raised
@example(kwargs={"calibration": True})  # found: TypeError from os.fspath
@example(kwargs={"calibration": "\x00"})  # found: ValueError (a NUL byte in a file name)
@example(kwargs={"calibration": "no\nsuch"})  # found: the file name broke the message's line
def test_run_options_validate_or_are_one_input_error(kwargs):
    result, error = outcome(make_run, "circuit.qasm", **kwargs)
    if error is None:
        check_run(*result)
        event("accepted")
    else:
        event(f"refused: {str(error).split()[0]}")


DEEP = functools.reduce(lambda x, _: [x], range(3000), [])  # repr() raises RecursionError


@pytest.mark.parametrize("value", [10**5000, [10**5000], {"k": -(10**5000)}, DEEP], ids=["int", "list", "dict", "deep"])  # fmt: skip
def test_values_no_message_can_quote_are_refused_as_input_errors(value):
    """Found: str() of an integer of 5,000 digits raises ValueError, repr() of a list 3,000
    deep RecursionError; each option, unit and managed keyword refused them with those."""
    calls = [lambda: parse_size(value), lambda: parse_duration(value), lambda: managed(quiet=value)]
    calls += [lambda k=k: managed(**{k: value}) for k in sorted(MANAGED) if k != "quiet"]
    calls += [lambda spec=spec: make_run("c.qasm", **{spec.name: value}) for spec in OPTIONS if spec.name != "backend"]  # fmt: skip
    for call in calls:
        outcome(call)


MANAGED = {
    "quota": human(SIZE_UNITS), "max_files": ANY, "spill_dir": st.sampled_from(["", "\x00", 5]),
    "batch": ANY, "root": st.sampled_from(["", "\x00", 5, b"x"]), "spill_quota": human(SIZE_UNITS),
    "put_timeout": human(TIME_UNITS), "quiet": st.sampled_from([True, False, None, 0, 1, "yes"]),
}  # fmt: skip


@fuzz_settings(ci=150)
@given(
    kwargs=st.fixed_dictionaries({}, optional={k: st.one_of(v, ANY) for k, v in MANAGED.items()})
)
@example(kwargs={"quiet": 10**5000})  # found: the message's repr() of it raised ValueError
@example(kwargs={"quota": [10**5000]})
def test_managed_options_validate_or_are_one_input_error(kwargs):
    made, error = outcome(managed, **kwargs)
    if error is not None:
        assert str(error).startswith("noisefs.managed: ")
        return
    options = made.options
    assert isinstance(options, ManagedOptions) and type(options.batch) is int and options.batch >= 1
    for name in ("quota", "max_files", "spill_quota"):
        value = getattr(options, name)
        assert value is None or (type(value) is int and 0 <= value < 2**63)
    assert options.put_timeout is None or (math.isfinite(options.put_timeout) and options.put_timeout >= 0)  # fmt: skip
    assert type(options.quiet) is bool
    event("accepted")


@fuzz_settings(ci=20)
@given(
    quota=st.integers(0, 2**63 - 1) | st.sampled_from(["0", "1", "4KiB", "64MiB", "1e18", "8EiB"]),
    max_files=st.none() | st.integers(-1, 2**63),
    put_timeout=st.none() | st.floats(0, 1e300) | st.sampled_from(["0", "1ns", "1e300", "1e-300"]),
)
def test_entering_managed_with_generated_bounds_opens_or_is_one_error(quota, max_files, put_timeout, tmp_path):  # fmt: skip
    """Entering opens a real arena with the bounds (root and spill private): it opens and
    closes, or the bound is refused as one project error."""
    made, error = outcome(managed, quota=quota, max_files=max_files, put_timeout=put_timeout)
    assume(error is None)
    root = Path("/dev/shm") / f"noisefs-fuzz-{uuid.uuid4().hex[:10]}"
    try:
        scope = managed(
            root=root, spill_dir=tmp_path / "spill", quota=made.options.quota,
            max_files=made.options.max_files, put_timeout=made.options.put_timeout, quiet=True,
        )  # fmt: skip

        def enter_and_leave():
            with scope:
                pass

        _, error = outcome(enter_and_leave, expect=NoiseFSError)
        event("entered" if error is None else f"refused on entry: {type(error).__name__}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the CLI on a handful of generated bad inputs: exit 2 and one `noisefs: error:` line ----


@pytest.fixture(scope="module")
def bell(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-cli") / "bell.qasm"
    path.write_text('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n')
    return path


FLAGS = {spec.flag: spec.name for spec in OPTIONS if not spec.is_flag and spec.name not in (
    "arena", "spill", "output", "scheduler", "scheduler_file", "snapshots", "observables_file")}  # fmt: skip


@fuzz_settings(ci=3, full=25)
@given(flag=st.sampled_from(sorted(FLAGS)), value=human(SIZE_UNITS) | _number() | st.text(max_size=12))  # fmt: skip
@example(flag="--aer-threads", value="99999999999999999999")
@example(flag="--quota", value="1 PiB")
def test_cli_refuses_a_bad_option_value_in_one_line(bell, flag, value):
    assume("\x00" not in value and not value.startswith("-"))
    _, error = outcome(make_run, bell, **{FLAGS[flag]: value})
    assume(error is not None)  # a value that is fine would run: only bad ones here
    one_error_line(run_cli(bell, flag, value))


@fuzz_settings(ci=3, full=25)
@given(extra=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8), min_size=1, max_size=3))  # fmt: skip
@example(extra=["a\nb"])  # found: argparse's message quoted the argument's newline
def test_cli_refuses_stray_arguments_in_one_line(bell, extra):
    assume(not any(e.startswith("-") for e in extra))
    one_error_line(run_cli(bell, *extra))
